"""Joint-meeting settings: the categories of cases, the kinds of member units, deadlines and
their escalation, and the limits of requests. Defaults from DOMAIN.md section 3; another city
changes them through WUYE_* variables (JSON for the structured ones)."""

from __future__ import annotations

from pydantic import Field, field_validator

from wuye.core.settings import Settings

# 物业纠纷 categories, by the name the API carries.
DEFAULT_CATEGORIES: dict[str, str] = {
    "FEES": "物业费",
    "REPAIRS": "维修与共用设施",
    "PARKING": "停车",
    "FIRE_SAFETY": "消防安全与消防通道",
    "NOISE": "噪声与扰民",
    "HANDOVER": "共用部位移交",
    "ENTERPRISE_EXIT": "企业退出",
    "ILLEGAL_CONSTRUCTION": "违法建设",
    "OTHER": "其他",
}

# The member units of a joint meeting (DOMAIN.md section 3), by kind.
DEFAULT_UNIT_KINDS: dict[str, str] = {
    "HOUSING": "住建",
    "URBAN_MANAGEMENT": "城市管理",
    "CONSTRUCTION": "建设",
    "POWER": "供电",
    "WATER": "供水",
    "GAS": "供气",
    "HEATING": "供热",
    "MARKET_SUPERVISION": "市场监管",
    "FINANCE": "财政",
    "CIVIL_AFFAIRS": "民政",
    "ENVIRONMENT": "生态环境",
    "POLICE": "公安",
    "RESIDENTS_COMMITTEE": "居民委员会",
    "ENTERPRISE": "物业服务企业",
    "OWNERS_COMMITTEE": "业主委员会或业主代表",
}


class MeetingsSettings(Settings):
    service: str = "meetings"

    categories: dict[str, str] = DEFAULT_CATEGORIES
    unit_kinds: dict[str, str] = DEFAULT_UNIT_KINDS
    # The unit kind whose overdue tasks are the enterprise's (a bad credit record).
    enterprise_unit_kind: str = "ENTERPRISE"
    # The role of the bearer tokens a unit of each kind acts with; other kinds: member_unit.
    unit_kind_roles: dict[str, str] = {
        "ENTERPRISE": "enterprise",
        "OWNERS_COMMITTEE": "owners_committee",
        "RESIDENTS_COMMITTEE": "residents_committee",
    }
    # Who follows a task up: the first step while it is on time, the next when it goes overdue,
    # the one after when it is very late (the last step stays).
    escalation_ladder: tuple[str, ...] = ("SUB_DISTRICT", "DISTRICT", "CITY")
    # Working days after the deadline at which an overdue task becomes very late (mySociety's
    # Alaveteli: late at 20 days, very late at 40).
    very_late_working_days: int = Field(default=20, ge=1)
    # Working days before the deadline at which the unit is reminded.
    reminder_working_days: int = Field(default=2, ge=0)
    # A meeting held this many days ago may still be recorded (minutes are often written up
    # later); one this many days ahead may be convened.
    max_record_back_days: int = Field(default=30, ge=0)
    max_convene_ahead_days: int = Field(default=90, ge=0)
    # The longest deadline a resolution or a referral may give.
    max_task_working_days: int = Field(default=250, ge=1)
    # Days after its resolution within which the resident who raised a case may reopen it.
    reopen_days: int = Field(default=30, ge=0)
    # How often the timer marks overdue and very late tasks and sends reminders.
    task_check_seconds: float = Field(default=60.0, gt=0)
    # The longest period a district report covers.
    max_report_days: int = Field(default=731, ge=1)
    max_description_length: int = Field(default=2000, ge=10, le=2000)
    max_minutes_length: int = Field(default=20000, ge=100, le=20000)
    max_cases_per_meeting: int = Field(default=50, ge=1)
    max_units_per_meeting: int = Field(default=40, ge=1)
    max_tasks_per_resolution: int = Field(default=20, ge=1)
    max_amendments: int = Field(default=50, ge=1)

    @field_validator("escalation_ladder")
    @classmethod
    def _ladder(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("at least one step, each named once")
        return value
