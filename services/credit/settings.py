"""Credit settings: grade bands, base score, record types and the events that cause records.
Every number is a default (DOMAIN.md section 2) another city changes through WUYE_* variables
(JSON for the structured ones)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from wuye.core.settings import Settings


class RecordType(BaseModel, frozen=True):
    direction: str  # GOOD | BAD
    # Points are kept to one decimal, like scores.
    points: Decimal = Field(gt=0, decimal_places=1)
    severity: str = "NORMAL"  # NORMAL | SERIOUS
    # Days a NORMAL record counts; SERIOUS records count until rectified.
    validity_days: int = Field(default=365, ge=1)
    # Whether an authority may record it by hand (RecordCreditEvent).
    manual: bool = False


class EventRule(BaseModel, frozen=True):
    """An event of another service that makes a credit record."""

    event: str  # the event's ce_type (proto full name)
    topic: str
    record_type: str
    # Where the subject's credit code is in the event.
    subject_field: str = "credit_code"
    # The event's field whose text the record keeps as its reason, if the event has it.
    reason_field: str = "reason"
    # The record is made only when these fields have these values ...
    when: dict[str, bool | int | str] = Field(default_factory=dict)
    # ... and these numeric fields are below these bounds.
    when_below: dict[str, float] = Field(default_factory=dict)


DEFAULT_RECORD_TYPES: dict[str, RecordType] = {
    "UNFILED_EXIT": RecordType(direction="BAD", points=Decimal(10)),
    "ALARM_ESCALATED": RecordType(direction="BAD", points=Decimal(2)),
    "FALSE_ALARMS_EXCEEDED": RecordType(direction="BAD", points=Decimal(2)),
    "INSPECTION_FAILED": RecordType(direction="BAD", points=Decimal(5)),
    "RECTIFICATION_OVERDUE": RecordType(direction="BAD", points=Decimal(5)),
    "MEETING_TASK_OVERDUE": RecordType(direction="BAD", points=Decimal(5)),
    "COMPLAINT_VERIFIED": RecordType(direction="BAD", points=Decimal(3), manual=True),
    "CONTRACT_BREACH": RecordType(direction="BAD", points=Decimal(10), manual=True),
    # A winner refusing to sign, false documents found on a complaint (招投标失信).
    "TENDER_MISCONDUCT": RecordType(direction="BAD", points=Decimal(10)),
    "ADMINISTRATIVE_PENALTY": RecordType(
        direction="BAD", points=Decimal(15), severity="SERIOUS", manual=True
    ),
    "AWARD": RecordType(direction="GOOD", points=Decimal(5), manual=True),
    "HONOUR": RecordType(direction="GOOD", points=Decimal(10), manual=True),
}

DEFAULT_EVENT_RULES: tuple[EventRule, ...] = (
    EventRule(
        event="wuye.registry.v1.EnterpriseExited",
        topic="wuye.registry.project.v1",
        record_type="UNFILED_EXIT",
        when={"filed": False},
    ),
    EventRule(
        event="wuye.iot.v1.AlarmEscalated", topic="wuye.iot.alarm.v1", record_type="ALARM_ESCALATED"
    ),
    EventRule(
        event="wuye.iot.v1.DeviceFalseAlarmsExceeded",
        topic="wuye.iot.device.v1",
        record_type="FALSE_ALARMS_EXCEEDED",
    ),
    EventRule(
        event="wuye.inspections.v1.CheckRecorded",
        topic="wuye.inspections.check.v1",
        record_type="INSPECTION_FAILED",
        when_below={"score": 60},
    ),
    EventRule(
        event="wuye.inspections.v1.RectificationOverdue",
        topic="wuye.inspections.rectification.v1",
        record_type="RECTIFICATION_OVERDUE",
    ),
    # A joint meeting's task assigned to the enterprise, past its deadline.
    EventRule(
        event="wuye.meetings.v1.TaskOverdue",
        topic="wuye.meetings.task.v1",
        record_type="MEETING_TASK_OVERDUE",
        when={"assigned_to_enterprise": True},
    ),
    # Misconduct in a tender, as the tenders service records it.
    EventRule(
        event="wuye.tenders.v1.MisconductFound",
        topic="wuye.tenders.tender.v1",
        record_type="TENDER_MISCONDUCT",
    ),
)


class CreditSettings(Settings):
    service: str = "credit"

    # Score at or above each bound earns the grade (AAA >= 85, AA 80-85, A 70-80, B 60-70);
    # below the lowest: B with no bad record in force, C with one.
    grade_bounds: dict[str, Decimal] = {
        "AAA": Decimal(85),
        "AA": Decimal(80),
        "A": Decimal(70),
        "B": Decimal(60),
    }
    # The base of a filed subject before its first assessment.
    default_base_score: Decimal = Decimal(70)
    record_types: dict[str, RecordType] = DEFAULT_RECORD_TYPES
    event_rules: tuple[EventRule, ...] = DEFAULT_EVENT_RULES
    # An assessment group has at least this many members, one from the housing authority.
    assessment_min_assessors: int = Field(default=3, ge=1)
    # The years an assessment period may name (first, last).
    assessment_years: tuple[int, int] = (2000, 2100)
    # How often the timer looks for records that expired.
    expiry_check_seconds: float = Field(default=30.0, gt=0)
    feed_page_max: int = Field(default=1000, ge=1)
