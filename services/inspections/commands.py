"""Inspection use cases; each writes its rows and its events in one transaction, taking the row
lock of the aggregate it changes (or changing it by a conditional statement) before it reads the
state it changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from functools import partial
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, Engine

from wuye.core.consumer import EventMeta, Handler, configured_handlers
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.draw import new_seed
from wuye.core.errors import AlreadyExists, NotFound
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.pii import Pseudonymizer, mask_id_number
from wuye.core.wire import to_date
from wuye.credit.v1 import credit_service_pb2 as credit
from wuye.credit.v1 import events_pb2 as credit_events
from wuye.inspections import domain, store
from wuye.inspections.domain import (
    Check,
    Finding,
    Inspector,
    Rectification,
    RectificationState,
    Reinspection,
    Round,
    RoundSpec,
    RoundState,
)
from wuye.inspections.settings import InspectionsSettings, TriggerRule
from wuye.inspections.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry

INSPECTOR_TOPIC = "wuye.inspections.inspector.v1"
ROUND_TOPIC = "wuye.inspections.round.v1"
CHECK_TOPIC = "wuye.inspections.check.v1"
RECTIFICATION_TOPIC = "wuye.inspections.rectification.v1"
TOPICS = (INSPECTOR_TOPIC, ROUND_TOPIC, CHECK_TOPIC, RECTIFICATION_TOPIC)
READ_MODEL_TOPICS = (
    "wuye.registry.project.v1",
    "wuye.registry.practitioner.v1",
    "wuye.credit.grade.v1",
)
# The registry keys the persons linked to enterprises (practitioners) under this purpose; an
# inspector's relatives are keyed the same way so the two can be compared.
PERSON_KEY_PURPOSE = "practitioner"


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _moment(stamp: Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def _field(message: Message, path: str) -> str:
    """A (possibly nested, "alarm.project_id") field of an event."""
    for name in path.split("."):
        message = getattr(message, name)
    return message


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
        self.city = ZoneInfo(settings.city_timezone)
        self._clock = clock
        self._persons = Pseudonymizer(
            settings.pii_key.get_secret_value().encode(), purpose=PERSON_KEY_PURPOSE
        )

    def now(self) -> dt.datetime:
        return self._clock()

    def today(self) -> dt.date:
        return self.settings.local_date(self.now())

    # ------------------------------------------------------------ inspectors

    def register_inspector(
        self, inspector: Inspector, relative_id_numbers: list[str]
    ) -> tuple[Inspector, list[str]]:
        """Adds the inspector; returns them with their relatives' masked ID numbers."""
        call = current()
        for district in inspector.districts:
            call.require_district(district)
        relatives = {
            self._persons.key_of(number): mask_id_number(number) for number in relative_id_numbers
        }
        now = self.now()
        with self.engine.begin() as connection:
            if not store.insert_inspector(connection, inspector, relatives, now):
                raise AlreadyExists(
                    "INSPECTOR_EXISTS",
                    f"inspector {inspector.inspector_id} is already in the pool",
                    inspector_id=inspector.inspector_id,
                )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        INSPECTOR_TOPIC,
                        inspector.inspector_id,
                        inspector.districts[0],
                        ev.InspectorRegistered(
                            inspector_id=inspector.inspector_id,
                            unit=inspector.unit,
                            district_codes=list(inspector.districts),
                            conflicts=list(inspector.conflicts),
                            relatives=len(relatives),
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return inspector, sorted(relatives.values())

    def list_inspectors(
        self, district: str, after: str | None, limit: int
    ) -> list[tuple[Inspector, list[str]]]:
        with self.reader.connect() as connection:
            found = store.list_inspectors(connection, district, after, limit)
            masked = store.masked_relatives(connection, [i.inspector_id for i in found])
        return [(i, masked.get(i.inspector_id, [])) for i in found]

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
    ) -> Round:
        for district in districts:
            current().require_district(district)
        halves = domain.period_halves(period)
        domain.check_one_round_per_period(store.rounds_holding(connection, districts, halves))
        now = self.now()
        round_id = new_id(districts[0], "R")
        # A concurrent round for the same period fails here; the caller's retry then sees it.
        store.hold_periods(connection, round_id, districts, halves)
        since = domain.complaints_since(now, self.settings.complaint_window_days)
        spec = RoundSpec(
            round_id=round_id,
            districts=districts,
            period=period,
            rates=rates,
            floor_rate=floor_rate,
            yearly_floor_rate=self.settings.yearly_floor_rate,
            inspectors_per_check=inspectors_per_check,
            created_at=timestamp(now.replace(microsecond=0)).ToJsonString(),
            entities=tuple(store.entities(connection, districts, since)),
            inspectors=tuple(
                Inspector(
                    i.inspector_id,
                    i.name,
                    i.unit,
                    i.districts,
                    domain.conflicts_of(i.conflicts, relative_keys, linked),
                )
                for i, relative_keys, linked in store.inspector_pool(connection, districts)
            ),
            drawn_earlier=tuple(store.drawn_this_year(connection, districts, period[:4])),
            complaint_weights=self.settings.complaint_weights,
        )
        seed = new_seed()
        commitment = domain.commitment(seed, spec)
        store.insert_round(connection, spec, seed.hex(), commitment, now)
        add_events(
            connection,
            [
                Event.of_aggregate(
                    ROUND_TOPIC,
                    round_id,
                    districts[0],
                    ev.RoundCreated(
                        round_id=round_id,
                        district_codes=list(districts),
                        period=period,
                        seed_commitment=commitment,
                        listed=len(spec.entities),
                        inspectors=len(spec.inspectors),
                        create_time=timestamp(now),
                    ),
                )
            ],
        )
        return Round(spec, commitment, RoundState.COMMITTED, "")

    def _round(self, connection: Connection, round_id: str, *, lock: bool = False):
        row = store.get_round(connection, round_id, lock=lock)
        if row is None:
            raise NotFound("ROUND_NOT_FOUND", f"no round {round_id}", round_id=round_id)
        return row

    def draw_round(self, round_id: str) -> Round:
        with self.engine.begin() as connection:
            row = self._round(connection, round_id, lock=True)
            spec = store.spec_from_json(row.spec)
            for district in spec.districts:
                current().require_district(district)
            domain.check_drawable(RoundState(row.state))
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
                connection,
                [s.project_id for s in selections if s.reason == "triggered"],
                round_id,
                row.created_at,
            )
            store.mark_drawn(connection, round_id, now)
            add_events(
                connection,
                [
                    Event.of_aggregate(
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
        return Round(spec, row.seed_commitment, RoundState.DRAWN, row.seed, tuple(checks))

    def get_round(self, round_id: str) -> Round:
        with self.reader.connect() as connection:
            row = self._round(connection, round_id)
            spec = store.spec_from_json(row.spec)
            current().scope.check_served(spec.districts[0])
            state = RoundState(row.state)
            if state is not RoundState.DRAWN:
                return Round(spec, row.seed_commitment, state, "")
            checks = store.checks_of_round(connection, round_id)
        return Round(spec, row.seed_commitment, state, row.seed, tuple(checks))

    # ------------------------------------------------------------ triggers

    def trigger(self, project_id: str, reason: str) -> int:
        with self.engine.begin() as connection:
            project = store.get_project(connection, project_id, lock=True)
            if project is None:
                raise NotFound(
                    "PROJECT_NOT_FOUND", f"no project {project_id}", project_id=project_id
                )
            now = self.now()
            _, pending = store.add_trigger(connection, project_id, reason, now)
            add_events(connection, [self._triggered(project, pending, now)])
        return pending

    @staticmethod
    def _triggered(project, pending: int, now: dt.datetime) -> Event:
        return Event.of_aggregate(
            CHECK_TOPIC,
            project.project_id,
            project.district_code,
            ev.InspectionTriggered(
                project_id=project.project_id,
                district_code=project.district_code,
                pending_triggers=pending,
                occur_time=timestamp(now),
            ),
        )

    # ------------------------------------------------------------ checks

    def check_to_record(self, check_id: str) -> Check:
        """The check the caller is about to record, if they may: its checklist decides what
        the request must hold, and a caller who may not record it learns nothing of that."""
        with self.reader.connect() as connection:
            check = store.get_check(connection, check_id)
        if check is None:
            raise NotFound("CHECK_NOT_FOUND", f"no check {check_id}", check_id=check_id)
        self._require_recorder(check)
        return check

    @staticmethod
    def _require_recorder(check: Check) -> None:
        call = current()
        call.require_district(check.district_code)
        if not call.principal.is_authority:
            domain.check_inspector_assigned(check.inspector_ids, call.principal.subject)

    def record_check(
        self, check_id: str, *, scores: dict[str, Decimal], score: Decimal, findings: list[Finding]
    ) -> tuple[Check, list[Rectification]]:
        with self.engine.begin() as connection:
            check = store.get_check(connection, check_id, lock=True)
            if check is None:
                raise NotFound("CHECK_NOT_FOUND", f"no check {check_id}", check_id=check_id)
            self._require_recorder(check)
            domain.check_recordable(check)
            now = self.now()
            check = replace(
                check, scores=scores, findings=tuple(findings), score=score, recorded_at=now
            )
            store.record_check(connection, check)
            orders = domain.orders_of(check, findings, partial(new_id, check.district_code, "O"))
            store.insert_orders(connection, orders, now)
            events = [
                Event.of_aggregate(
                    CHECK_TOPIC,
                    check.project_id,
                    check.district_code,
                    ev.CheckRecorded(
                        check_id=check_id,
                        round_id=check.round_id,
                        project_id=check.project_id,
                        credit_code=check.credit_code,
                        district_code=check.district_code,
                        score=float(score),
                        findings=len(findings),
                        occur_time=timestamp(now),
                    ),
                ),
                *(
                    Event.of_aggregate(
                        RECTIFICATION_TOPIC,
                        o.order_id,
                        o.district_code,
                        ev.RectificationOpened(
                            order_id=o.order_id,
                            check_id=check_id,
                            project_id=o.project_id,
                            credit_code=o.credit_code,
                            district_code=o.district_code,
                            rectify_by=to_date(o.rectify_by),
                            occur_time=timestamp(now),
                        ),
                    )
                    for o in orders
                ),
            ]
            add_events(connection, events)
        return check, orders

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
            now = self.now()
            what = Reinspection.RECTIFIED if rectified else Reinspection.EXTENDED
            changed = domain.transition(order, what, now, new_deadline)
            store.update_order(connection, changed)
            if rectified:
                message = ev.RectificationClosed(
                    order_id=order.order_id,
                    project_id=order.project_id,
                    credit_code=order.credit_code,
                    district_code=order.district_code,
                    occur_time=timestamp(now),
                )
            else:
                message = ev.RectificationExtended(
                    order_id=order.order_id,
                    project_id=order.project_id,
                    credit_code=order.credit_code,
                    district_code=order.district_code,
                    previous_rectify_by=to_date(order.rectify_by),
                    rectify_by=to_date(changed.rectify_by),
                    occur_time=timestamp(now),
                )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        RECTIFICATION_TOPIC, order.order_id, order.district_code, message
                    )
                ],
            )
        return changed

    def mark_overdue(self) -> int:
        """Orders past their deadline become overdue, each announced once."""
        now = self.now()
        with self.engine.begin() as connection:
            due = store.due_orders(connection, self.today())
            for order in due:
                store.update_order(
                    connection, domain.transition(order, Reinspection.OVERDUE, now), overdue_at=now
                )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        RECTIFICATION_TOPIC,
                        o.order_id,
                        o.district_code,
                        ev.RectificationOverdue(
                            order_id=o.order_id,
                            project_id=o.project_id,
                            credit_code=o.credit_code,
                            district_code=o.district_code,
                            rectify_by=to_date(o.rectify_by),
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

    def published(
        self, district: str, credit_code: str, after: str | None, limit: int
    ) -> list[Check]:
        with self.reader.connect() as connection:
            return store.published(
                connection, district, credit_code, after, limit, current().scope.served
            )

    def assessment_report(self, district: str, period: str):
        start, end = domain.period_bounds(period, self.city)
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
    # Each handler is idempotent by its own keys as well as by the inbox: an event replayed
    # after the inbox forgot it (retention) changes nothing.

    def on_project_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        store.add_project(
            connection,
            message.project_id,
            message.district_code,
            registry.ProjectType.Name(message.type).removeprefix("PROJECT_TYPE_"),
        )

    def on_enterprise_assigned(self, connection: Connection, message, meta: EventMeta) -> None:
        store.set_serving_enterprise(
            connection, message.project_id, message.credit_code, _moment(message.occur_time)
        )

    def on_enterprise_exited(self, connection: Connection, message, meta: EventMeta) -> None:
        store.set_serving_enterprise(
            connection,
            message.project_id,
            "",
            _moment(message.occur_time),
            exiting=message.credit_code,
        )

    def on_practitioner_registered(self, connection: Connection, message, meta: EventMeta):
        store.link_person(
            connection, message.practitioner_id, message.person_key, message.credit_code
        )

    def on_grade_changed(self, connection: Connection, message, meta: EventMeta) -> None:
        change = message.change
        if change.subject.kind == credit.SUBJECT_KIND_ENTERPRISE:
            store.set_grade(
                connection,
                change.subject.id,
                credit.Grade.Name(change.grade).removeprefix("GRADE_"),
                change.sequence,
            )

    def trigger_handler(self, rule: TriggerRule):
        def handle(connection: Connection, message, meta: EventMeta) -> None:
            project = store.get_project(connection, _field(message, rule.project_field), lock=True)
            if project is None:
                return
            now = self.now()
            added, pending = store.add_trigger(
                connection,
                project.project_id,
                f"{meta.event_type} {meta.event_id}"[:200],
                now,
                source_event_id=meta.event_id,
            )
            if added:
                add_events(connection, [self._triggered(project, pending, now)])

        return handle

    def complaint_handler(self, rule: TriggerRule):
        def handle(connection: Connection, message, meta: EventMeta) -> None:
            project_id = _field(message, rule.project_field)
            if store.get_project(connection, project_id) is not None:
                store.add_complaint(connection, meta.event_id, project_id, self.now())

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
            "wuye.registry.v1.PractitionerRegistered": Handler(
                registry_events.PractitionerRegistered, self.on_practitioner_registered
            ),
            "wuye.credit.v1.GradeChanged": Handler(
                credit_events.GradeChanged, self.on_grade_changed
            ),
        }
        found.update(
            configured_handlers(
                (rule.event, self.complaint_handler(rule)) for rule in self.settings.complaint_rules
            )
        )
        found.update(
            configured_handlers(
                (rule.event, self.trigger_handler(rule)) for rule in self.settings.trigger_rules
            )
        )
        return found
