"""Credit use cases. Whatever changes a subject's records, assessment or filing recomputes its
standing in the same transaction; a changed standing is appended to the feed and announced
through the outbox in that transaction too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from sqlalchemy import Connection, Engine

from wuye.core.auth import Role
from wuye.core.consumer import EventMeta, Handler, configured_handlers
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.errors import NotFound, PermissionDenied
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.wire import timestamp
from wuye.credit import domain, store
from wuye.credit.domain import (
    Appeal,
    Assessment,
    AssessmentCycle,
    Direction,
    Grade,
    GradeRules,
    Record,
    Severity,
    Standing,
    SubjectFile,
    SubjectKind,
)
from wuye.credit.settings import CreditSettings, EventRule
from wuye.credit.store import StoredStanding
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry

GRADE_TOPIC = "wuye.credit.grade.v1"
TOPICS = (GRADE_TOPIC,)
FEED_VERSION = 1
EXPIRY_TIMER = "record-expiry"


def grade_number(grade: Grade) -> int:
    return pb.Grade.Value(f"GRADE_{grade.value}")


def subject_message(subject: SubjectFile) -> pb.Subject:
    return pb.Subject(
        kind=pb.SubjectKind.Value(f"SUBJECT_KIND_{subject.kind.value}"), id=subject.subject_id
    )


class Credit:
    def __init__(
        self,
        engine: Engine,
        settings: CreditSettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self._clock = clock
        bounds = sorted(
            ((Grade(name), bound) for name, bound in settings.grade_bounds.items()),
            key=lambda pair: pair[1],
            reverse=True,
        )
        self.rules = GradeRules(bounds=tuple(bounds), default_base=settings.default_base_score)

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ standings

    def _standing(self, connection: Connection, subject: SubjectFile, at: dt.datetime) -> Standing:
        assessment = domain.latest_assessment(store.assessments_of(connection, subject.key), at)
        return domain.evaluate(
            subject, assessment, store.records_of(connection, subject.key), at, self.rules
        )

    def restand(self, connection: Connection, key: str) -> Standing:
        """Recompute a subject's standing now; announce it if it changed."""
        subject = store.get_subject(connection, key, lock=True)
        if subject is None:
            raise NotFound("NO_CREDIT_FILE", f"no credit file for {key}")
        now = self.now()
        standing = self._standing(connection, subject, now)
        self._announce(
            connection, [(subject, standing, store.stored_standing(connection, key))], now
        )
        return standing

    def _announce(
        self,
        connection: Connection,
        standings: list[tuple[SubjectFile, Standing, StoredStanding | None]],
        now: dt.datetime,
    ) -> int:
        """Save, feed and announce the standings that changed; returns how many did."""
        changed = [(s, new, old) for s, new, old in standings if _differs(new, old)]
        if not changed:
            return 0
        store.save_standings(connection, [(s.key, new) for s, new, _ in changed], now)
        sequences = store.append_changes(
            connection,
            [(s, old.grade if old else Grade.C_UNFILED, new) for s, new, old in changed],
            now,
        )
        events = []
        for (subject, standing, old), sequence in zip(changed, sequences, strict=True):
            change = pb.GradeChange(
                sequence=sequence,
                subject=subject_message(subject),
                district_code=subject.district_code,
                previous_grade=grade_number(old.grade if old else Grade.C_UNFILED),
                grade=grade_number(standing.grade),
                score=str(standing.score),
                blacklisted=standing.blacklisted,
                red_listed=standing.red_listed,
                change_time=timestamp(now),
                feed_version=FEED_VERSION,
            )
            messages: list = [ev.GradeChanged(change=change)]
            if standing.blacklisted and not (old and old.blacklisted):
                cause = "grade C" if standing.grade is Grade.C else "a serious record in force"
                messages.append(
                    ev.Blacklisted(
                        subject=change.subject,
                        district_code=subject.district_code,
                        cause=cause,
                        sequence=sequence,
                    )
                )
            if standing.red_listed and not (old and old.red_listed):
                messages.append(
                    ev.RedListed(
                        subject=change.subject,
                        district_code=subject.district_code,
                        sequence=sequence,
                    )
                )
            events += [
                Event(
                    topic=GRADE_TOPIC,
                    key=subject.key,
                    subject=f"subjects/{subject.key}",
                    district=subject.district_code,
                    message=message,
                )
                for message in messages
            ]
        add_events(connection, events)
        return len(changed)

    def recompute_all(self) -> int:
        """Recompute every subject from scratch (after a change of rules); returns how many
        standings changed. Reads everything at once and writes the changes in bulk."""
        now = self.now()
        with self.engine.begin() as connection:
            store.lock_subjects(connection)
            records = store.all_records(connection)
            assessments = store.all_assessments(connection)
            standings = [
                (
                    subject,
                    domain.evaluate(
                        subject,
                        domain.latest_assessment(assessments.get(subject.key, ()), now),
                        records.get(subject.key, ()),
                        now,
                        self.rules,
                    ),
                    stored,
                )
                for subject, stored in store.all_subjects(connection)
            ]
            return self._announce(connection, standings, now)

    # ------------------------------------------------------------ reading

    def _subject(self, connection: Connection, kind: SubjectKind, subject_id: str) -> SubjectFile:
        subject = store.get_subject(connection, domain.subject_key(kind, subject_id))
        if subject is None:
            raise NotFound(
                "NO_CREDIT_FILE",
                f"no credit file for {kind.lower()} {subject_id}",
                subject=subject_id,
            )
        return subject

    def report(
        self, kind: SubjectKind, subject_id: str, as_of: dt.datetime | None
    ) -> tuple[SubjectFile, Standing, dt.datetime]:
        at = as_of or self.now()
        with self.reader.connect() as connection:
            subject = self._subject(connection, kind, subject_id)
            _require_reader(subject)
            return subject, self._standing(connection, subject, at), at

    def list_grades(
        self,
        kind: SubjectKind,
        district: str,
        grade: Grade | None,
        red_listed_only: bool,
        blacklisted_only: bool,
        after: str | None,
        limit: int,
    ) -> list:
        call = current()
        if kind is SubjectKind.PRACTITIONER and not call.principal.is_authority:
            raise PermissionDenied(
                "PRACTITIONER_GRADES_RESTRICTED", "practitioners' grades are for authorities"
            )
        if kind is SubjectKind.PRACTITIONER:
            # Not public: an authority lists the practitioners of its own districts.
            if district:
                call.require_district(district)
            districts = frozenset({district}) if district else call.visible_districts()
        else:
            districts = frozenset({district}) if district else call.scope.served
        with self.reader.connect() as connection:
            return store.list_standings(
                connection, kind, districts, grade, red_listed_only, blacklisted_only, after, limit
            )

    def feed(self, after: int, limit: int) -> list:
        with self.reader.connect() as connection:
            return store.changes_after(connection, after, limit)

    # ------------------------------------------------------------ authorities' acts

    def create_assessment(
        self,
        connection: Connection,
        kind: SubjectKind,
        subject_id: str,
        *,
        cycle: AssessmentCycle,
        period: str,
        checklist: str,
        base_score: Decimal,
        assessors: list[dict],
        scores: dict[str, str],
    ) -> tuple[Assessment, SubjectFile, Standing]:
        subject = self._subject(connection, kind, subject_id)
        current().require_district(subject.district_code)
        assessment = Assessment(
            assessment_id=new_id(subject.district_code, "S"),
            subject_key=subject.key,
            cycle=cycle,
            period=period,
            base_score=base_score,
            assessed_at=self.now(),
        )
        store.insert_assessment(connection, assessment, checklist, assessors, scores)
        return assessment, subject, self.restand(connection, subject.key)

    def record_manual(
        self,
        connection: Connection,
        kind: SubjectKind,
        subject_id: str,
        record_type: str,
        *,
        evidence_reference: str,
        reason: str,
        occurred_at: dt.datetime | None,
    ) -> tuple[Record, SubjectFile, Standing]:
        subject = self._subject(connection, kind, subject_id)
        call = current()
        call.require_district(subject.district_code)
        record = self._new_record(
            subject,
            record_type,
            occurred_at=occurred_at or self.now(),
            source=f"{call.principal.role}:{call.principal.subject}",
            evidence_reference=evidence_reference,
            reason=reason,
        )
        store.insert_record(connection, record)
        return record, subject, self.restand(connection, subject.key)

    def _new_record(
        self,
        subject: SubjectFile,
        record_type: str,
        *,
        occurred_at: dt.datetime,
        source: str,
        source_event_id: str = "",
        evidence_reference: str = "",
        reason: str = "",
    ) -> Record:
        rule = self.settings.record_types[record_type]
        severity = Severity(rule.severity)
        return Record(
            record_id=new_id(subject.district_code, "R"),
            subject_key=subject.key,
            record_type=record_type,
            direction=Direction(rule.direction),
            # As stored (tenths), so the record answered now reads as it will be read back.
            points=store.from_tenths(store.to_tenths(rule.points)),
            severity=severity,
            occurred_at=occurred_at,
            expires_at=domain.expiry(severity, occurred_at, rule.validity_days),
            source=source,
            source_event_id=source_event_id,
            evidence_reference=evidence_reference,
            reason=reason,
        )

    def _record(self, connection: Connection, record_id: str) -> tuple[Record, SubjectFile]:
        record = store.get_record(connection, record_id)
        if record is None:
            raise NotFound("RECORD_NOT_FOUND", f"no record {record_id}", record_id=record_id)
        subject = store.get_subject(connection, record.subject_key)
        return record, subject

    def appeal(self, record_id: str, reason: str) -> Record:
        with self.engine.begin() as connection:
            record, subject = self._record(connection, record_id)
            call = current()
            call.require_district(subject.district_code)
            principal = call.principal
            own = principal.role is Role.ENTERPRISE and principal.subject == subject.subject_id
            if not (own or principal.is_authority):
                raise PermissionDenied("NOT_YOUR_RECORD", "only its subject appeals a record")
            domain.check_appealable(record)
            record = replace(record, appeal=Appeal.PENDING, appeal_reason=reason)
            store.update_record(connection, record)
        return record

    def decide_appeal(
        self, record_id: str, uphold: bool, reason: str
    ) -> tuple[Record, SubjectFile, Standing]:
        with self.engine.begin() as connection:
            record, subject = self._record(connection, record_id)
            current().require_district(subject.district_code)
            domain.check_decidable(record)
            record = replace(
                record,
                appeal=Appeal.UPHELD if uphold else Appeal.DISMISSED,
                appeal_decision=reason,
                removed_at=self.now() if uphold else None,
            )
            store.update_record(connection, record)
            return record, subject, self.restand(connection, subject.key)

    def mark_rectified(self, record_id: str, evidence: str) -> tuple[Record, SubjectFile, Standing]:
        with self.engine.begin() as connection:
            record, subject = self._record(connection, record_id)
            current().require_district(subject.district_code)
            domain.check_rectifiable(record)
            record = replace(record, rectified_at=self.now(), evidence_reference=evidence)
            store.update_record(connection, record)
            return record, subject, self.restand(connection, subject.key)

    # ------------------------------------------------------------ events of other services

    def on_filing_approved(self, connection: Connection, message, meta: EventMeta) -> None:
        at = message.occur_time.ToDatetime(dt.UTC)
        key = domain.subject_key(SubjectKind.ENTERPRISE, message.credit_code)
        subject = store.get_subject(connection, key, lock=True) or SubjectFile(
            SubjectKind.ENTERPRISE, message.credit_code, message.name, message.district_code
        )
        if message.kind == registry.FILING_KIND_EXIT:
            subject = replace(subject, unfiled_at=at)
        elif message.kind == registry.FILING_KIND_INITIAL:
            subject = replace(
                subject,
                name=message.name,
                district_code=message.district_code,
                filed_at=at,
                unfiled_at=None,
            )
        else:
            subject = replace(subject, name=message.name)
        store.upsert_subject(connection, subject, self.now())
        self.restand(connection, key)

    def on_practitioner_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        key = domain.subject_key(SubjectKind.PRACTITIONER, message.person_key)
        existing = store.get_subject(connection, key, lock=True)
        at = message.occur_time.ToDatetime(dt.UTC)
        subject = (
            replace(existing, district_code=message.district_code)
            if existing
            else (
                SubjectFile(
                    SubjectKind.PRACTITIONER,
                    message.person_key,
                    "",
                    message.district_code,
                    filed_at=at,
                )
            )
        )
        store.upsert_subject(connection, subject, self.now())
        self.restand(connection, key)

    def rule_handler(self, rule: EventRule) -> Callable[[Connection, object, EventMeta], None]:
        def handle(connection: Connection, message, meta: EventMeta) -> None:
            if not domain.event_matches(message, rule.when, rule.when_below):
                return
            credit_code = getattr(message, rule.subject_field)
            if not credit_code:
                return  # e.g. a check of a project no enterprise serves
            key = domain.subject_key(SubjectKind.ENTERPRISE, credit_code)
            subject = store.get_subject(connection, key, lock=True)
            if subject is None:
                # The record may arrive before the filing: keep it in an unfiled credit file.
                district = getattr(message, "district_code", "") or meta.district
                subject = SubjectFile(SubjectKind.ENTERPRISE, credit_code, "", district)
                store.upsert_subject(connection, subject, self.now())
            occurred = (
                message.occur_time.ToDatetime(dt.UTC)
                if "occur_time" in message.DESCRIPTOR.fields_by_name
                and message.HasField("occur_time")
                else self.now()
            )
            record = self._new_record(
                subject,
                rule.record_type,
                occurred_at=occurred,
                source=f"{meta.event_type} {meta.event_id}",
                source_event_id=meta.event_id,
            )
            store.insert_record(connection, record)
            self.restand(connection, key)

        return handle

    def handlers(self) -> dict[str, Handler]:
        found = {
            "wuye.registry.v1.FilingApproved": Handler(
                registry_events.FilingApproved, self.on_filing_approved
            ),
            "wuye.registry.v1.PractitionerRegistered": Handler(
                registry_events.PractitionerRegistered, self.on_practitioner_registered
            ),
        }
        found.update(
            configured_handlers(
                (rule.event, self.rule_handler(rule)) for rule in self.settings.event_rules
            )
        )
        return found

    # ------------------------------------------------------------ timers

    def expire_due(self) -> int:
        """Recompute the subjects whose records expired since the last run; returns how many."""
        now = self.now()
        with self.engine.begin() as connection:
            mark = store.timer_mark(connection, EXPIRY_TIMER)
            since = mark or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            keys = store.subjects_with_expiries(connection, since, now)
            for key in keys:
                self.restand(connection, key)
            store.set_timer_mark(connection, EXPIRY_TIMER, now, new=mark is None)
        return len(keys)


def _differs(new: Standing, old: StoredStanding | None) -> bool:
    if old is None:
        return True
    if (new.grade, new.score, new.blacklisted, new.red_listed) == tuple(old):
        return False
    # An unfiled subject's score means nothing: only its listing is announced.
    return not (
        new.grade is old.grade is Grade.C_UNFILED
        and (new.blacklisted, new.red_listed) == (old.blacklisted, old.red_listed)
    )


def _require_reader(subject: SubjectFile) -> None:
    """Authorities, services and inspectors read any report; an enterprise reads its own."""
    call = current()
    call.require_district(subject.district_code)
    principal = call.principal
    if principal.role is Role.ENTERPRISE and principal.subject != subject.subject_id:
        raise PermissionDenied("NOT_YOUR_REPORT", "an enterprise reads only its own credit report")
