"""Credit use cases. Whatever changes a subject's records, assessment or filing recomputes its
standing in the same transaction; a changed standing is appended to the feed and announced
through the outbox in that transaction too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal

from google.protobuf.message import Message
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
    AnnouncedStanding,
    Assessment,
    AssessmentCycle,
    Direction,
    FeedEntry,
    FilingOutcome,
    Grade,
    GradeRules,
    Record,
    Severity,
    Standing,
    SubjectFile,
    SubjectKind,
)
from wuye.credit.settings import CreditSettings, EventRule
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry

GRADE_TOPIC = "wuye.credit.grade.v1"
TOPICS = (GRADE_TOPIC,)
FEED_VERSION = 1
EXPIRY_TIMER = "record-expiry"
# What an approved filing of each kind means for the credit file.
_FILING_OUTCOMES = {
    registry.FILING_KIND_INITIAL: FilingOutcome.FILED,
    registry.FILING_KIND_CHANGE: FilingOutcome.CHANGED,
    registry.FILING_KIND_EXIT: FilingOutcome.EXITED,
}


def grade_number(grade: Grade) -> int:
    return pb.Grade.Value(f"GRADE_{grade.value}")


def subject_message(kind: SubjectKind, subject_id: str) -> pb.Subject:
    return pb.Subject(kind=pb.SubjectKind.Value(f"SUBJECT_KIND_{kind.value}"), id=subject_id)


def grade_change_message(entry: FeedEntry) -> pb.GradeChange:
    return pb.GradeChange(
        sequence=entry.sequence,
        subject=subject_message(entry.kind, entry.subject_id),
        district_code=entry.district_code,
        previous_grade=grade_number(entry.previous_grade),
        grade=grade_number(entry.standing.grade),
        score=str(entry.standing.score),
        blacklisted=entry.standing.blacklisted,
        red_listed=entry.standing.red_listed,
        change_time=timestamp(entry.changed_at),
        feed_version=FEED_VERSION,
    )


def record_message(r: Record, standing: Standing | None) -> pb.CreditRecord:
    return pb.CreditRecord(
        record_id=r.record_id,
        record_type=r.record_type,
        direction=pb.Direction.Value(f"DIRECTION_{r.direction.value}"),
        points=str(r.points),
        severity=pb.Severity.Value(f"SEVERITY_{r.severity.value}"),
        status=pb.RecordStatus.Value(f"RECORD_STATUS_{domain.record_status(r, standing).value}"),
        occur_time=timestamp(r.occurred_at),
        expire_time=timestamp(r.expires_at),
        rectify_time=timestamp(r.rectified_at),
        source=r.source,
        source_event_id=r.source_event_id,
        evidence_reference=r.evidence_reference,
        reason=r.reason,
        appeal_reason=r.appeal_reason,
        appeal_decision=r.appeal_decision,
    )


# What caused a recomputation, as the events to announce before the standing; built from the
# new standing, which tells whether a record still counts.
Causes = Callable[[Standing], Iterable[Message]]


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

    def restand(self, connection: Connection, key: str, causes: Causes | None = None) -> Standing:
        """Recompute a subject's standing now; announce what caused it, then the standing if it
        changed."""
        subject = store.get_subject(connection, key, lock=True)
        if subject is None:
            raise NotFound("NO_CREDIT_FILE", f"no credit file for {key}")
        now = self.now()
        standing = self._standing(connection, subject, now)
        if causes is not None:
            self._emit(connection, subject, causes(standing))
        self._announce(
            connection, [(subject, standing, store.stored_standing(connection, key))], now
        )
        return standing

    def _emit(
        self, connection: Connection, subject: SubjectFile, messages: Iterable[Message]
    ) -> None:
        add_events(connection, _events(subject, messages))

    def _announce(
        self,
        connection: Connection,
        standings: list[tuple[SubjectFile, Standing, AnnouncedStanding | None]],
        now: dt.datetime,
    ) -> int:
        """Save, feed and announce the standings that changed; returns how many did."""
        changed = [(s, new, old) for s, new, old in standings if new.differs_from(old)]
        if not changed:
            return 0
        store.save_standings(connection, [(s.key, new) for s, new, _ in changed], now)
        sequences = store.append_changes(
            connection,
            [(s, old.grade if old else Grade.C_UNFILED, new) for s, new, old in changed],
            now,
        )
        events: list[Event] = []
        for (subject, standing, old), sequence in zip(changed, sequences, strict=True):
            change = grade_change_message(
                FeedEntry(
                    sequence=sequence,
                    kind=subject.kind,
                    subject_id=subject.subject_id,
                    district_code=subject.district_code,
                    previous_grade=old.grade if old else Grade.C_UNFILED,
                    standing=standing.announced,
                    changed_at=now,
                )
            )
            messages: list[Message] = [ev.GradeChanged(change=change)]
            if standing.blacklisted and not (old and old.blacklisted):
                messages.append(
                    ev.Blacklisted(
                        subject=change.subject,
                        district_code=subject.district_code,
                        cause=standing.blacklist_cause,
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
            events += _events(subject, messages)
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

    def _subject(
        self, connection: Connection, kind: SubjectKind, subject_id: str, *, lock: bool = False
    ) -> SubjectFile:
        """The subject's file; with `lock`, held until the transaction ends: whatever changes a
        file or announces one of its events takes the lock before it reads."""
        subject = store.get_subject(connection, domain.subject_key(kind, subject_id), lock=lock)
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
        subject = self._subject(connection, kind, subject_id, lock=True)
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
        recorded = ev.AssessmentRecorded(
            subject=subject_message(subject.kind, subject.subject_id),
            district_code=subject.district_code,
            assessment_id=assessment.assessment_id,
            cycle=pb.AssessmentCycle.Value(f"ASSESSMENT_CYCLE_{cycle.value}"),
            period=period,
            base_score=str(assessment.base_score),
            assess_time=timestamp(assessment.assessed_at),
        )
        standing = self.restand(connection, subject.key, lambda _: [recorded])
        return assessment, subject, standing

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
        subject = self._subject(connection, kind, subject_id, lock=True)
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
        return record, subject, self._restand_after(connection, subject, record, ev.RecordAdded)

    def _restand_after(
        self, connection: Connection, subject: SubjectFile, record: Record, event_type, **fields
    ) -> Standing:
        """Recompute the standing after a change of `record`, announcing the change first."""
        return self.restand(
            connection,
            subject.key,
            lambda standing: [
                event_type(
                    subject=subject_message(subject.kind, subject.subject_id),
                    district_code=subject.district_code,
                    record=record_message(record, standing),
                    **fields,
                )
            ],
        )

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
        """A record to change, read under its subject's lock: a change that committed meanwhile
        (an appeal, a decision) is seen."""
        found = store.get_record(connection, record_id)
        if found is None:
            raise NotFound("RECORD_NOT_FOUND", f"no record {record_id}", record_id=record_id)
        subject = store.get_subject(connection, found.subject_key, lock=True)
        record = store.get_record(connection, record_id)
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
            record = domain.appealed(record, reason)
            store.update_record(connection, record)
            self._emit(
                connection,
                subject,
                [
                    ev.RecordAppealed(
                        subject=subject_message(subject.kind, subject.subject_id),
                        district_code=subject.district_code,
                        record=record_message(record, None),
                    )
                ],
            )
        return record

    def decide_appeal(
        self, record_id: str, uphold: bool, reason: str
    ) -> tuple[Record, SubjectFile, Standing]:
        with self.engine.begin() as connection:
            record, subject = self._record(connection, record_id)
            current().require_district(subject.district_code)
            record = domain.decided(record, uphold, reason, self.now())
            store.update_record(connection, record)
            standing = self._restand_after(
                connection, subject, record, ev.AppealDecided, upheld=uphold
            )
            return record, subject, standing

    def mark_rectified(self, record_id: str, evidence: str) -> tuple[Record, SubjectFile, Standing]:
        with self.engine.begin() as connection:
            record, subject = self._record(connection, record_id)
            current().require_district(subject.district_code)
            record = domain.rectified(record, evidence, self.now())
            store.update_record(connection, record)
            standing = self._restand_after(connection, subject, record, ev.RecordRectified)
            return record, subject, standing

    # ------------------------------------------------------------ events of other services

    def on_filing_approved(self, connection: Connection, message, meta: EventMeta) -> None:
        at = message.occur_time.ToDatetime(dt.UTC)
        key = domain.subject_key(SubjectKind.ENTERPRISE, message.credit_code)
        subject = store.get_subject(connection, key, lock=True) or SubjectFile(
            SubjectKind.ENTERPRISE, message.credit_code, message.name, message.district_code
        )
        outcome = _FILING_OUTCOMES.get(message.kind)
        if outcome is None:  # a poison event: dead-lettered with this reason
            raise ValueError(
                f"filing {message.filing_id} approved with unknown kind {message.kind}"
            )
        updated = domain.apply_filing(subject, outcome, message.name, message.district_code, at)
        if updated is None:
            return  # delivered before, or older than what the file shows
        store.upsert_subject(connection, updated, self.now())
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
            fields = message.DESCRIPTOR.fields_by_name
            occurred = (
                message.occur_time.ToDatetime(dt.UTC)
                if "occur_time" in fields and message.HasField("occur_time")
                else self.now()
            )
            record = self._new_record(
                subject,
                rule.record_type,
                occurred_at=occurred,
                source=f"{meta.event_type} {meta.event_id}",
                source_event_id=meta.event_id,
                reason=getattr(message, rule.reason_field) if rule.reason_field in fields else "",
            )
            if not store.insert_record(connection, record):
                return  # this event made its record already (its inbox row may be long gone)
            self._restand_after(connection, subject, record, ev.RecordAdded)

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


def _events(subject: SubjectFile, messages: Iterable[Message]) -> list[Event]:
    """Events of a subject's credit file: one topic, keyed by the subject, so in order."""
    return [
        Event(
            topic=GRADE_TOPIC,
            key=subject.key,
            subject=f"subjects/{subject.key}",
            district=subject.district_code,
            message=message,
        )
        for message in messages
    ]


def _require_reader(subject: SubjectFile) -> None:
    """Authorities, services and inspectors read any report; an enterprise reads its own."""
    call = current()
    call.require_district(subject.district_code)
    principal = call.principal
    if principal.role is Role.ENTERPRISE and principal.subject != subject.subject_id:
        raise PermissionDenied("NOT_YOUR_REPORT", "an enterprise reads only its own credit report")
