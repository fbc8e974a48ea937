"""The meetings suite, in fresh PostgreSQL schemas: (a) the task timer over 100,000 open tasks,
as the `task-deadlines` timer runs it (a day on which a share of them went overdue, then the
next run, when none did), and (b) a district's report over a year of 50,000 cases with their
tasks and meetings, as GetDistrictReport computes it.

`run(options)` returns the figures and prints nothing; `section(figures)` renders them as the
report's other suites are rendered.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report as printed
from bench.deployment import migrated_schema
from wuye.core.db import create_service_engine
from wuye.core.ids import credit_code_check_char
from wuye.meetings import store
from wuye.meetings.commands import Meetings
from wuye.meetings.service import SPEC
from wuye.meetings.settings import MeetingsSettings

TARGET_SCAN_SECONDS = 2.0
TARGET_REPORT_SECONDS = 2.0
DISTRICT = "150602"
OTHER_DISTRICTS = ("150603", "150621", "150627")
# A Thursday: the timer's day.
TODAY = dt.datetime(2026, 12, 3, 1, tzinfo=dt.UTC)
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INSERT_BATCH = 5000
UNIT_KINDS = ("ENTERPRISE", "ENTERPRISE", "HOUSING", "URBAN_MANAGEMENT", "WATER", "POWER", "POLICE")


@dataclass(frozen=True)
class MeetingsOptions:
    database_url: str
    open_tasks: int = 100_000
    # Of the open tasks, the share past their deadline on the timer's day (deadlines spread
    # over some fifty working days make about 2% fall due each day), and the share due within
    # the reminder window.
    overdue_share: float = 0.02
    reminder_share: float = 0.01
    cases: int = 50_000
    # Cases of other districts the same year: the report must pick its own out.
    other_cases: int = 20_000
    enterprises: int = 400
    report_repeats: int = 5


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _cpu_timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, this process's CPU seconds (PostgreSQL's are not counted), and the result:
    on a machine busy with other work the wall time says more about the others."""
    cpu = time.process_time()
    seconds, result = _timed(work)
    return seconds, time.process_time() - cpu, result


def _credit_code(serial: int) -> str:
    body = f"91{DISTRICT}MA{serial:07d}"
    return body + credit_code_check_char(body)


def _task_row(n: int, district: str, due: dt.date, kind: str, unit_id: str, **values) -> dict:
    return {
        "task_id": f"{district}-T{n:08d}",
        "case_id": f"{district}-J{n // 2:08d}",
        "meeting_id": f"{district}-M{n // 20:08d}",
        "resolution_id": f"{district}-D{n // 2:08d}",
        "district_code": district,
        "project_id": f"{district}-P{n % 3000:05d}",
        "unit_kind": kind,
        "unit_id": unit_id,
        "unit_name": unit_id,
        "working_days": 10,
        "done_when": "整改到位，经街道复查",
        "due_date": due,
        "state": "OPEN",
        "lateness": "ON_TIME",
        "escalation_level": "SUB_DISTRICT",
        "completion_note": "",
        "reminded": False,
        "created_at": TODAY - dt.timedelta(days=30),
        **values,
    }


def _insert(engine, table, rows: list[dict]) -> None:
    with engine.begin() as connection:
        for first in range(0, len(rows), INSERT_BATCH):
            connection.execute(table.insert(), rows[first : first + INSERT_BATCH])
        connection.exec_driver_sql(f"ANALYZE {table.name}")


def _unit(rng: random.Random, enterprises: int) -> tuple[str, str]:
    kind = rng.choice(UNIT_KINDS)
    unit_id = _credit_code(rng.randrange(enterprises)) if kind == "ENTERPRISE" else f"{kind}-unit"
    return kind, unit_id


def measure_scan(options: MeetingsOptions) -> dict[str, Any]:
    rng = random.Random(13)
    today = TODAY.date()
    overdue = int(options.open_tasks * options.overdue_share)
    reminded = int(options.open_tasks * options.reminder_share)
    rows = []
    for n in range(options.open_tasks):
        if n < overdue:
            due = today - dt.timedelta(days=rng.randint(2, 20))
        elif n < overdue + reminded:
            due = today + dt.timedelta(days=1)
        else:
            due = today + dt.timedelta(days=rng.randint(10, 200))
        rows.append(_task_row(n, DISTRICT, due, *_unit(rng, options.enterprises)))
    with migrated_schema(options.database_url, MeetingsSettings, SPEC) as settings:
        engine = create_service_engine(settings)
        try:
            _insert(engine, store.tasks, rows)
            meetings = Meetings(engine, settings, clock=lambda: TODAY)
            first_seconds, first_cpu, changed = _cpu_timed(meetings.mark_overdue)
            quiet = [_timed(meetings.mark_overdue) for _ in range(3)]
            with engine.connect() as connection:
                events = connection.exec_driver_sql("SELECT count(*) FROM outbox").scalar_one()
        finally:
            engine.dispose()
    return {
        "open_tasks": options.open_tasks,
        "changed": changed,
        "events": events,
        "first_seconds": round(first_seconds, 4),
        "first_cpu_seconds": round(first_cpu, 4),
        "quiet_seconds": round(max(t for t, _ in quiet), 4),
        "target_seconds": TARGET_SCAN_SECONDS,
        "passed": first_seconds < TARGET_SCAN_SECONDS,
    }


def _moment(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    return start + dt.timedelta(seconds=rng.randrange(int((end - start).total_seconds())))


def _year_of_cases(engine, options: MeetingsOptions, rng: random.Random) -> dict[str, int]:
    end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC) - dt.timedelta(days=1)
    cases, tasks, meetings = [], [], []
    districts = [DISTRICT] * options.cases + [
        rng.choice(OTHER_DISTRICTS) for _ in range(options.other_cases)
    ]
    for n, district in enumerate(districts):
        raised = _moment(rng, YEAR_START, end)
        accepted = raised + dt.timedelta(days=rng.randint(1, 5)) if rng.random() < 0.8 else None
        resolved = (
            accepted + dt.timedelta(days=rng.randint(3, 60))
            if accepted and rng.random() < 0.7
            else None
        )
        cases.append(
            {
                "case_id": f"{district}-J{n:08d}",
                "project_id": f"{district}-P{n % 3000:05d}",
                "district_code": district,
                "sub_district": "天骄街道",
                "credit_code": _credit_code(n % options.enterprises),
                "category": rng.choice(("FEES", "REPAIRS", "PARKING", "FIRE_SAFETY", "NOISE")),
                "description": "消防通道被占用",
                "enterprise_attempts": "",
                "state": "RESOLVED" if resolved else "RESOLVING" if accepted else "RAISED",
                "raised_by_role": "owners_committee",
                "raised_by": f"{district}-C{n % 3000:05d}",
                "name_key": "",
                "phone_key": "",
                "masked_name": "",
                "masked_phone": "",
                "reason": "",
                "referred_to": None,
                "raised_at": raised,
                "accepted_at": accepted,
                "resolved_at": resolved,
            }
        )
        if accepted:
            for k in range(rng.choice((1, 1, 2, 3))):
                lateness = "OVERDUE" if rng.random() < 0.15 else "ON_TIME"
                tasks.append(
                    _task_row(
                        len(tasks),
                        district,
                        (accepted + dt.timedelta(days=14 + k)).date(),
                        *_unit(rng, options.enterprises),
                        state="ACCEPTED" if resolved else "OPEN",
                        lateness=lateness,
                    )
                )
        if n % 10 == 0:
            meetings.append(
                {
                    "meeting_id": f"{district}-M{n:08d}",
                    "district_code": district,
                    "sub_district": "天骄街道",
                    "held_at": _moment(rng, YEAR_START, end),
                    "place": "街道办事处会议室",
                    "case_ids": [f"{district}-J{n + k:08d}" for k in range(10)],
                    "invitations": [
                        {
                            "kind": kind,
                            "unit_id": f"{kind}-unit",
                            "name": kind,
                            "attendance": rng.choice(
                                ("PRESENT", "PRESENT", "PRESENT", "ABSENT_WITHOUT_LEAVE")
                            ),
                        }
                        for kind in UNIT_KINDS[2:]
                    ],
                    "state": "CLOSED",
                    "chair": "天骄街道",
                    "created_at": TODAY,
                }
            )
    _insert(engine, store.cases, cases)
    _insert(engine, store.tasks, tasks)
    _insert(engine, store.meetings, meetings)
    return {"cases": len(cases), "tasks": len(tasks), "meetings": len(meetings)}


def measure_report(options: MeetingsOptions) -> dict[str, Any]:
    with migrated_schema(options.database_url, MeetingsSettings, SPEC) as settings:
        engine = create_service_engine(settings)
        try:
            stored = _year_of_cases(engine, options, random.Random(2026))
            meetings = Meetings(engine, settings, clock=lambda: TODAY)

            def report():
                return meetings.district_report(
                    DISTRICT, dt.date(2026, 1, 1), dt.date(2026, 12, 31)
                )

            first, _ = _timed(report)
            runs = [_cpu_timed(report) for _ in range(options.report_repeats)]
        finally:
            engine.dispose()
    seconds = [t for t, _, _ in runs]
    last = runs[-1][2]
    return {
        **stored,
        "report": {
            "cases_raised": last.cases_raised,
            "cases_resolved": last.cases_resolved,
            "median_days": last.median_days,
            "enterprises": len(last.by_enterprise),
        },
        "first_seconds": round(first, 4),
        "seconds": {"median": round(statistics.median(seconds), 4), "max": round(max(seconds), 4)},
        "cpu_seconds": round(statistics.median(c for _, c, _ in runs), 4),
        "repeats": len(seconds),
        "target_seconds": TARGET_REPORT_SECONDS,
        "passed": max(first, *seconds) < TARGET_REPORT_SECONDS,
    }


def run(options: MeetingsOptions, log_dir: Path | None = None) -> dict[str, Any]:
    """Both measures; `log_dir` is accepted for the runner's sake (nothing is logged)."""
    scan = measure_scan(options)
    report = measure_report(options)
    return {"scan": scan, "report": report, "passed": scan["passed"] and report["passed"]}


def section(figures: dict[str, Any]) -> str:
    """The suite's part of the printed report."""
    scan, report = figures["scan"], figures["report"]
    rows = [
        [
            f"task timer over {scan['open_tasks']:,} open tasks: {scan['changed']:,} overdue or "
            f"reminded, {scan['events']:,} events",
            f"{scan['first_seconds']:.3f} s",
            f"< {scan['target_seconds']:.0f} s",
            printed.PASS if scan["passed"] else printed.BELOW,
        ],
        ["  of it, CPU in this process", f"{scan['first_cpu_seconds']:.3f} s", "", ""],
        ["  the next run, nothing due", f"{scan['quiet_seconds']:.3f} s", "", ""],
        [
            f"district report over a year: {report['report']['cases_raised']:,} cases of "
            f"{report['cases']:,}, {report['tasks']:,} tasks, {report['meetings']:,} meetings "
            f"(first / median / max of {report['repeats']})",
            f"{report['first_seconds']:.3f} / {report['seconds']['median']:.3f} / "
            f"{report['seconds']['max']:.3f} s",
            f"< {report['target_seconds']:.0f} s",
            printed.PASS if report["passed"] else printed.BELOW,
        ],
        ["  of it, CPU in this process (median)", f"{report['cpu_seconds']:.3f} s", "", ""],
    ]
    return "\n".join(
        [
            "Meetings: the task timer and GetDistrictReport's work over PostgreSQL",
            printed.table(["measure", "value", "target", "verdict"], rows),
        ]
    )
