"""Inspection use cases; each writes its rows and its events in one transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from sqlalchemy import Connection, Engine

from wuye.core.consumer import EventMeta, Handler, configured_handlers
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.errors import AlreadyExists, NotFound
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.credit.v1 import credit_service_pb2 as credit
from wuye.credit.v1 import events_pb2 as credit_events
from wuye.inspections import domain, store
from wuye.inspections.domain import (
    Inspector,
    Rectification,
    RectificationState,
    RoundSpec,
    RoundState,
)
from wuye.inspections.settings import InspectionsSettings
from wuye.inspections.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry

ROUND_TOPIC = "wuye.inspections.round.v1"
CHECK_TOPIC = "wuye.inspections.check.v1"
RECTIFICATION_TOPIC = "wuye.inspections.rectification.v1"
TOPICS = (ROUND_TOPIC, CHECK_TOPIC, RECTIFICATION_TOPIC)
READ_MODEL_TOPICS = ("wuye.registry.project.v1", "wuye.credit.grade.v1")


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _event(topic: str, key: str, district: str, message) -> Event:
    return Event(
        topic=topic,
        key=key,
        subject=f"{topic.split('.')[2]}s/{key}",
        district=district,
        message=message,
    )


class Inspections:
    def __init__(
        self,
        engine: Engine,
        settings: InspectionsSettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ inspectors

    def register_inspector(self, inspector: Inspector) -> Inspector:
        call = current()
        for district in inspector.districts:
            call.require_district(district)
        with self.engine.begin() as connection:
            if store.get_inspector(connection, inspector.inspector_id) is not None:
                raise AlreadyExists(
                    "INSPECTOR_EXISTS",
                    f"inspector {inspector.inspector_id} is already in the pool",
                    inspector_id=inspector.inspector_id,
                )
            store.insert_inspector(connection, inspector, self.now())
        return inspector

    def list_inspectors(self, district: str, after: str | None, limit: int) -> list[Inspector]:
        with self.reader.connect() as connection:
            return store.list_inspectors(connection, district, after, limit)

    # ------------------------------------------------------------ rounds

    def create_round(
        self,
        connection: Connection,
        *,
        districts: tuple[str, ...],
        period: str,
        rates: dict[str, Decimal],
        floor_rate: Decimal,
        inspectors_per_check: int,
    ) -> tuple[RoundSpec, str, RoundState, str]:
        for district in districts:
            current().require_district(district)
        now = self.now()
        spec = RoundSpec(
            round_id=new_id(districts[0], "R"),
            districts=districts,
            period=period,
            rates=rates,
            floor_rate=floor_rate,
            inspectors_per_check=inspectors_per_check,
            created_at=timestamp(now.replace(microsecond=0)).ToJsonString(),
            entities=tuple(store.entities(connection, districts)),
            inspectors=tuple(store.inspector_pool(connection, districts)),
        )
        seed = secrets.token_bytes(32)
        commitment = domain.commitment(seed, spec)
        store.insert_round(connection, spec, seed.hex(), commitment, now)
        return spec, commitment, RoundState.COMMITTED, ""

    def _round(self, connection: Connection, round_id: str, *, lock: bool = False):
        row = store.get_round(connection, round_id, lock=lock)
        if row is None:
            raise NotFound("ROUND_NOT_FOUND", f"no round {round_id}", round_id=round_id)
        return row

    def draw_round(self, round_id: str) -> tuple[RoundSpec, str, RoundState, str, list]:
        with self.engine.begin() as connection:
            row = self._round(connection, round_id, lock=True)
            domain.check_drawable(RoundState(row.state))
            spec = store.spec_from_json(row.spec)
            for district in spec.districts:
                current().require_district(district)
            seed = bytes.fromhex(row.seed)
            selections = domain.draw(seed, spec)
            now = self.now()
            by_id = {e.project_id: e for e in spec.entities}
            store.insert_checks(
                connection,
                [
                    {
                        "check_id": new_id(by_id[s.project_id].district_code, "K"),
                        "round_id": round_id,
                        "project_id": s.project_id,
                        "project_type": by_id[s.project_id].project_type,
                        "credit_code": by_id[s.project_id].credit_code,
                        "district_code": by_id[s.project_id].district_code,
                        "reason": s.reason,
                        "inspector_ids": list(s.inspector_ids),
                        "position": position,
                    }
                    for position, s in enumerate(selections)
                ],
            )
            store.take_triggers(
                connection, [s.project_id for s in selections if s.reason == "triggered"], round_id
            )
            store.mark_drawn(connection, round_id, now)
            add_events(
                connection,
                [
                    _event(
                        ROUND_TOPIC,
                        round_id,
                        spec.districts[0],
                        ev.RoundDrawn(
                            round_id=round_id,
                            district_codes=list(spec.districts),
                            period=spec.period,
                            seed=row.seed,
                            seed_commitment=row.seed_commitment,
                            selected=len(selections),
                            listed=len(spec.entities),
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
            checks = store.checks_of_round(connection, round_id)
        return spec, row.seed_commitment, RoundState.DRAWN, row.seed, checks

    def get_round(self, round_id: str) -> tuple[RoundSpec, str, RoundState, str, list]:
        with self.reader.connect() as connection:
            row = self._round(connection, round_id)
            spec = store.spec_from_json(row.spec)
            current().scope.check_served(spec.districts[0])
            state = RoundState(row.state)
            drawn = state is RoundState.DRAWN
            checks = store.checks_of_round(connection, round_id) if drawn else []
        return spec, row.seed_commitment, state, row.seed if drawn else "", checks

    # ------------------------------------------------------------ triggers

    def trigger(self, project_id: str, reason: str) -> int:
        with self.engine.begin() as connection:
            if store.get_project(connection, project_id) is None:
                raise NotFound(
                    "PROJECT_NOT_FOUND", f"no project {project_id}", project_id=project_id
                )
            return store.add_trigger(connection, project_id, reason, self.now())

    # ------------------------------------------------------------ checks

    def check_to_record(self, check_id: str):
        """The check the caller is about to record, if they may: its checklist decides what
        the request must hold, and a caller who may not record it learns nothing of that."""
        with self.reader.connect() as connection:
            row = store.get_check(connection, check_id)
        if row is None:
            raise NotFound("CHECK_NOT_FOUND", f"no check {check_id}", check_id=check_id)
        self._require_recorder(row)
        return row

    @staticmethod
    def _require_recorder(check) -> None:
        call = current()
        call.require_district(check.district_code)
        if not call.principal.is_authority:
            domain.check_inspector_assigned(check.inspector_ids, call.principal.subject)

    def record_check(
        self,
        check_id: str,
        *,
        scores: dict[str, Decimal],
        score: Decimal,
        findings: list[tuple[str, str, dt.date | None]],
    ) -> tuple[object, list[Rectification]]:
        with self.engine.begin() as connection:
            row = store.get_check(connection, check_id, lock=True)
            if row is None:
                raise NotFound("CHECK_NOT_FOUND", f"no check {check_id}", check_id=check_id)
            self._require_recorder(row)
            if row.recorded_at is not None:
                raise domain.FailedPrecondition(
                    "CHECK_ALREADY_RECORDED", f"check {check_id} was recorded; results stand"
                )
            now = self.now()
            store.record_check(
                connection,
                check_id,
                scores={k: str(v) for k, v in scores.items()},
                findings=[
                    {
                        "item_id": item,
                        "description": text,
                        "rectify_by": by.isoformat() if by else None,
                    }
                    for item, text, by in findings
                ],
                score_tenths=int(score * 10),
                now=now,
            )
            orders = [
                Rectification(
                    order_id=new_id(row.district_code, "O"),
                    check_id=check_id,
                    project_id=row.project_id,
                    credit_code=row.credit_code,
                    district_code=row.district_code,
                    item_id=item,
                    description=text,
                    rectify_by=by,
                    state=RectificationState.OPEN,
                )
                for item, text, by in findings
                if by is not None
            ]
            store.insert_orders(connection, orders, now)
            events = [
                _event(
                    CHECK_TOPIC,
                    row.project_id,
                    row.district_code,
                    ev.CheckRecorded(
                        check_id=check_id,
                        round_id=row.round_id,
                        project_id=row.project_id,
                        credit_code=row.credit_code,
                        district_code=row.district_code,
                        score=float(score),
                        findings=len(findings),
                        occur_time=timestamp(now),
                    ),
                ),
                *(
                    _event(
                        RECTIFICATION_TOPIC,
                        o.order_id,
                        o.district_code,
                        ev.RectificationOpened(
                            order_id=o.order_id,
                            check_id=check_id,
                            project_id=o.project_id,
                            credit_code=o.credit_code,
                            district_code=o.district_code,
                            rectify_by=_date(o.rectify_by),
                            occur_time=timestamp(now),
                        ),
                    )
                    for o in orders
                ),
            ]
            add_events(connection, events)
            recorded = store.get_check(connection, check_id)
        return recorded, orders

    # ------------------------------------------------------------ rectification

    def reinspect(
        self, order_id: str, rectified: bool, new_deadline: dt.date | None
    ) -> Rectification:
        call = current()
        with self.engine.begin() as connection:
            order = store.get_order(connection, order_id, lock=True)
            if order is None:
                raise NotFound(
                    "RECTIFICATION_NOT_FOUND", f"no rectification {order_id}", order_id=order_id
                )
            call.require_district(order.district_code)
            domain.check_reinspectable(order)
            now = self.now()
            if rectified:
                order = replace(order, state=RectificationState.CLOSED, closed_at=now)
                add_events(
                    connection,
                    [
                        _event(
                            RECTIFICATION_TOPIC,
                            order.order_id,
                            order.district_code,
                            ev.RectificationClosed(
                                order_id=order.order_id,
                                project_id=order.project_id,
                                credit_code=order.credit_code,
                                district_code=order.district_code,
                                occur_time=timestamp(now),
                            ),
                        )
                    ],
                )
            else:
                order = replace(order, state=RectificationState.OPEN, rectify_by=new_deadline)
            store.update_order(connection, order)
        return order

    def mark_overdue(self) -> int:
        """Orders past their deadline become overdue, each announced once."""
        now = self.now()
        with self.engine.begin() as connection:
            due = store.due_orders(connection, self.settings.local_date(now))
            for order in due:
                store.update_order(
                    connection, replace(order, state=RectificationState.OVERDUE), overdue_at=now
                )
            add_events(
                connection,
                [
                    _event(
                        RECTIFICATION_TOPIC,
                        o.order_id,
                        o.district_code,
                        ev.RectificationOverdue(
                            order_id=o.order_id,
                            project_id=o.project_id,
                            credit_code=o.credit_code,
                            district_code=o.district_code,
                            rectify_by=_date(o.rectify_by),
                            occur_time=timestamp(now),
                        ),
                    )
                    for o in due
                ],
            )
        return len(due)

    def list_orders(
        self, district: str, state: RectificationState | None, after: str | None, limit: int
    ) -> list[Rectification]:
        districts = frozenset({district}) if district else current().visible_districts()
        with self.reader.connect() as connection:
            return store.list_orders(connection, districts, state, after, limit)

    # ------------------------------------------------------------ publication

    def published(self, district: str, credit_code: str, after: str | None, limit: int) -> list:
        with self.reader.connect() as connection:
            return store.published(
                connection, district, credit_code, after, limit, current().scope.served
            )

    def assessment_report(self, district: str, period: str):
        start, end = domain.period_bounds(period)
        with self.reader.connect() as connection:
            results = [
                domain.CheckResult(r.credit_code, Decimal(r.score_tenths) / 10, len(r.findings))
                for r in store.recorded_between(connection, district, start, end)
            ]
            opened, closed, overdue, overdue_by = store.order_counts_between(
                connection, district, start, end
            )
        checks, average, findings, enterprises = domain.summarise(results, overdue_by)
        return checks, average, findings, opened, closed, overdue, enterprises

    # ------------------------------------------------------------ events of other services

    def on_project_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        store.upsert_project(
            connection,
            message.project_id,
            district_code=message.district_code,
            project_type=registry.ProjectType.Name(message.type).removeprefix("PROJECT_TYPE_"),
        )

    def on_enterprise_assigned(self, connection: Connection, message, meta: EventMeta) -> None:
        store.upsert_project(connection, message.project_id, credit_code=message.credit_code)

    def on_enterprise_exited(self, connection: Connection, message, meta: EventMeta) -> None:
        store.upsert_project(connection, message.project_id, credit_code="")

    def on_grade_changed(self, connection: Connection, message, meta: EventMeta) -> None:
        change = message.change
        if change.subject.kind == credit.SUBJECT_KIND_ENTERPRISE:
            store.set_grade(
                connection,
                change.subject.id,
                credit.Grade.Name(change.grade).removeprefix("GRADE_"),
            )

    def trigger_handler(self, project_field: str):
        def handle(connection: Connection, message, meta: EventMeta) -> None:
            project_id = getattr(message, project_field)
            if store.get_project(connection, project_id) is not None:
                store.add_trigger(
                    connection, project_id, f"{meta.event_type} {meta.event_id}", self.now()
                )

        return handle

    def handlers(self) -> dict[str, Handler]:
        found = {
            "wuye.registry.v1.ProjectRegistered": Handler(
                registry_events.ProjectRegistered, self.on_project_registered
            ),
            "wuye.registry.v1.EnterpriseAssigned": Handler(
                registry_events.EnterpriseAssigned, self.on_enterprise_assigned
            ),
            "wuye.registry.v1.EnterpriseExited": Handler(
                registry_events.EnterpriseExited, self.on_enterprise_exited
            ),
            "wuye.credit.v1.GradeChanged": Handler(
                credit_events.GradeChanged, self.on_grade_changed
            ),
        }
        found.update(
            configured_handlers(
                (rule.event, self.trigger_handler(rule.project_field))
                for rule in self.settings.trigger_rules
            )
        )
        return found
