"""Maintenance fund use cases. Each writes its rows, its ledger entries and its events in one
transaction, taking the row locks of what it changes before it reads them: a use's row first,
then its units' accounts in unit order. Also the handlers of other services' events (the
registry's units and transfers, voting's decisions, the IoT intake's escalated alarms), each
idempotent by its own keys as well as by the inbox, and the two timers."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import Connection, Engine

from wuye.core.auth import Role
from wuye.core.calendar import WorkingCalendar
from wuye.core.consumer import EventMeta, Handler, log_refused
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.errors import AlreadyExists, DomainError, NotFound, PermissionDenied, Violations
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.wire import enum_name, timestamp, to_date
from wuye.fund import domain, store
from wuye.fund.domain import (
    AccountKind,
    Decision,
    DepositKind,
    EmergencyFiling,
    EmergencyRequester,
    EntryKind,
    UnitAccount,
    Use,
    UseChange,
    UseEvent,
    UseEventType,
    UseOrigin,
    UseState,
    WorksKind,
)
from wuye.fund.settings import FundSettings
from wuye.fund.v1 import events_pb2 as ev
from wuye.fund.v1 import fund_service_pb2 as pb
from wuye.iot.v1 import events_pb2 as iot_events
from wuye.iot.v1 import intake_service_pb2 as iot_pb
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.voting.v1 import events_pb2 as voting_events
from wuye.voting.v1 import voting_service_pb2 as voting_pb

ACCOUNT_TOPIC = "wuye.fund.account.v1"
INTEREST_TOPIC = "wuye.fund.interest.v1"
USE_TOPIC = "wuye.fund.use.v1"
TOPICS = (ACCOUNT_TOPIC, INTEREST_TOPIC, USE_TOPIC)
REGISTRY_PROJECT_TOPIC = "wuye.registry.project.v1"
VOTING_TOPIC = "wuye.voting.vote.v1"
ALARM_TOPIC = "wuye.iot.alarm.v1"
EVENT_TOPICS = (REGISTRY_PROJECT_TOPIC, VOTING_TOPIC, ALARM_TOPIC)
# How many overdue requests or unflagged accounts one timer round takes.
TIMER_BATCH = 500

_ROLE_REQUESTERS = {
    Role.OWNERS_COMMITTEE: EmergencyRequester.OWNERS_COMMITTEE,
    Role.ENTERPRISE: EmergencyRequester.ENTERPRISE,
    Role.SUB_DISTRICT: EmergencyRequester.SUB_DISTRICT,
}


def _pb_enum(enum_type, prefix: str, value) -> int:
    return enum_type.Value(f"{prefix}_{value.value}") if value is not None else 0


def works_kind_number(kind: WorksKind | None) -> int:
    return _pb_enum(pb.WorksKind, "WORKS_KIND", kind)


def emergency_kind_number(emergency) -> int:
    return _pb_enum(pb.EmergencyKind, "EMERGENCY_KIND", emergency.kind if emergency else None)


def payment_message(
    payment: domain.Payment,
    entry_id: str,
    at: dt.datetime | None,
    debited_fen: int,
    owed_fen: int,
    with_shares: bool = True,
) -> pb.Payment:
    """A payment on the wire; its totals are given, since a list leaves the shares out."""
    return pb.Payment(
        stage=payment.stage,
        amount_fen=payment.amount_fen,
        debited_fen=debited_fen,
        owed_fen=owed_fen,
        entry_id=entry_id,
        shares=[
            pb.UnitShare(
                unit_id=s.unit_id,
                unit_number=s.unit_number,
                exclusive_area_cm2=s.area_cm2,
                share_fen=s.share_fen,
                debited_fen=s.debited_fen,
                owed_fen=s.owed_fen,
            )
            for s in payment.shares
        ]
        if with_shares
        else [],
        pay_time=timestamp(at),
    )


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """For the work over every account of a district: its millions of small tuples (parts,
    postings) cannot form cycles, yet they make the cyclic collector scan the heap again and
    again (measured: more than half the CPU of an allocation across a million accounts). Safe
    with other threads: whoever found it enabled enables it again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _paid(change: UseChange, at: dt.datetime) -> store.PaymentView:
    """The payment a change made, as the store reads it back (the shares it has)."""
    payment = change.payment
    return store.PaymentView(
        payment,
        payment.entry.entry_id if payment.entry else "",
        payment.debited_fen,
        payment.owed_fen,
        at,
    )


@dataclass(frozen=True)
class UseOut:
    """A use as answered: its view and its payments."""

    view: store.UseView
    payments: list[store.PaymentView]


class Fund:
    def __init__(
        self,
        engine: Engine,
        settings: FundSettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self.rules = settings.rules()
        self.calendar = WorkingCalendar.of(settings)
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ accounts

    def get_account(self, unit_id: str) -> store.AccountView:
        with self.reader.connect() as connection:
            view = store.get_account(connection, unit_id)
        if view is None:
            raise NotFound(
                "ACCOUNT_NOT_FOUND", f"no fund account of unit {unit_id}", unit_id=unit_id
            )
        self._require_reader_of(view)
        return view

    @staticmethod
    def _require_reader_of(view: store.AccountView) -> None:
        """An owner reads their own unit's account only (their token's subject is the owner
        key); the others their districts'."""
        call = current()
        call.require_district(view.account.district_code)
        if call.principal.role is Role.OWNER and call.principal.subject != view.owner_key:
            raise PermissionDenied(
                "NOT_OWNER_OF_UNIT",
                f"unit {view.account.unit_id} is not the caller's",
                unit_id=view.account.unit_id,
            )

    def list_accounts(
        self, project_id: str, district_code: str, top_up_required: bool, after, limit: int
    ) -> list[store.AccountView]:
        with self.reader.connect() as connection:
            return store.list_accounts(
                connection,
                current().visible_districts(),
                project_id,
                district_code,
                top_up_required,
                after,
                limit,
            )

    def record_deposit(
        self,
        connection: Connection,
        unit_id: str,
        kind: DepositKind | None,
        amount_fen: int,
        cost_fen_per_m2: int,
    ) -> tuple[store.AccountView, store.EntryView, int, Fraction]:
        """The deposit, and what the unit owes of uses paid from the new balance as far as it
        goes (oldest first)."""
        owed = store.owed_by_unit(connection, unit_id)
        owed_uses = {
            use_id: store.get_use(connection, use_id, lock=True) for use_id, _ in sorted(owed)
        }
        view = store.get_account(connection, unit_id, lock=True)
        if view is None:
            raise NotFound(
                "ACCOUNT_NOT_FOUND", f"no fund account of unit {unit_id}", unit_id=unit_id
            )
        account = view.account
        current().require_district(account.district_code)
        now = self.now()
        entry_id = new_id(account.district_code, "E")
        after, entry, amount = domain.record_deposit(
            account, kind, entry_id, self.rules, amount_fen, cost_fen_per_m2
        )
        store.insert_entries(connection, [entry], now, deposit_kind=kind)
        used = 0
        for use_id, owed_fen in owed:
            settled, use, paid = domain.settle_owed(
                after, owed_uses[use_id].use, owed_fen, new_id(account.district_code, "E")
            )
            if paid is None:
                break
            store.insert_entries(connection, [paid], now)
            store.settle(connection, unit_id, use, after.balance_fen - settled.balance_fen)
            used += after.balance_fen - settled.balance_fen
            after = settled
        store.change_account(
            connection,
            after,
            self._needs_top_up(after),
            deposited=amount,
            used=used,
        )
        events = [
            Event.of_aggregate(
                ACCOUNT_TOPIC,
                unit_id,
                account.district_code,
                ev.DepositRecorded(
                    unit_id=unit_id,
                    project_id=account.project_id,
                    district_code=account.district_code,
                    kind=_pb_enum(pb.DepositKind, "DEPOSIT_KIND", kind),
                    amount_fen=amount,
                    balance_fen=after.balance_fen,
                    entry_id=entry_id,
                    occur_time=timestamp(now),
                ),
            )
        ]
        if self._needs_top_up(after) and not view.top_up_required:
            events.append(self._top_up_requested(after, now))
        add_events(connection, events)
        rate = self.rules.deposit_rate_for(account.district_code)
        return (
            store.get_account(connection, unit_id),
            store.get_entry(connection, entry_id),
            amount,
            rate,
        )

    def _needs_top_up(self, account: UnitAccount) -> bool:
        return domain.needs_top_up(account.balance_fen, account.first_deposit_fen, self.rules)

    def _top_up_requested(self, account: UnitAccount, now: dt.datetime) -> Event:
        threshold = self.rules.top_up_below * account.first_deposit_fen
        return Event.of_aggregate(
            ACCOUNT_TOPIC,
            account.unit_id,
            account.district_code,
            ev.TopUpRequested(
                unit_id=account.unit_id,
                project_id=account.project_id,
                district_code=account.district_code,
                unit_number=account.unit_number,
                balance_fen=account.balance_fen,
                first_deposit_fen=account.first_deposit_fen,
                threshold_fen=threshold.numerator // threshold.denominator,
                owed_fen=account.owed_fen,
                occur_time=timestamp(now),
            ),
        )

    def flag_top_ups(self) -> int:
        """Accounts below the threshold and not flagged yet (a payment flags those it takes
        below at once; this catches a changed threshold) are flagged and their owners asked."""
        now = self.now()
        with self.engine.begin() as connection:
            found = store.unflagged_below(connection, self.rules.top_up_below, limit=TIMER_BATCH)
            store.flag_top_up(connection, [v.account.unit_id for v in found])
            add_events(connection, [self._top_up_requested(v.account, now) for v in found])
        return len(found)

    # ------------------------------------------------------------ the ledger

    def project_fund(self, project_id: str):
        with self.reader.connect() as connection:
            found = store.project_summary(connection, project_id)
        if found is None:
            raise NotFound(
                "PROJECT_NOT_FOUND",
                f"the fund holds no account of project {project_id}",
                project_id=project_id,
            )
        return found

    def list_entries(
        self, project_id: str, unit_id: str, before: int | None, limit: int
    ) -> list[store.EntryView]:
        call = current()
        if unit_id:
            self.get_account(unit_id)
        elif call.principal.role is Role.OWNER:
            raise PermissionDenied(
                "OWNER_READS_OWN_UNIT", "an owner reads the entries of their own unit: name it"
            )
        else:
            call.require_district(project_id[:6])
        with self.reader.connect() as connection:
            return store.list_entries(connection, project_id, unit_id, before, limit)

    def reverse_entry(self, connection: Connection, entry_id: str, reason: str) -> store.EntryView:
        found = store.get_entry(connection, entry_id)
        if found is None:
            raise NotFound("ENTRY_NOT_FOUND", f"no ledger entry {entry_id}", entry_id=entry_id)
        current().require_district(found.entry.district_code)
        domain.check_correctable(found.entry)
        locked = store.lock_accounts(
            connection,
            (p.account.unit_id for p in found.entry.postings if p.account.kind is AccountKind.UNIT),
        )
        # Read again under the locks: a concurrent reversal of it has committed or waits.
        found = store.get_entry(connection, entry_id)
        now = self.now()
        undo = domain.reversal(
            found.entry,
            new_id(found.entry.district_code, "E"),
            reason,
            [entry_id] if found.reversed_by else [],
        )
        balances = {a.ledger_account: a.balance_fen for a in locked.values()}
        posted = domain.post(undo, balances)
        store.insert_entries(connection, [undo], now)
        original_kind = found.entry.kind
        for ledger_account, balance in posted.items():
            if ledger_account.kind is not AccountKind.UNIT:
                continue
            before = locked[ledger_account.unit_id]
            change = balance - before.balance_fen
            first = before.first_deposit_fen
            if found.deposit_kind is DepositKind.FIRST:
                first = 0
            after = UnitAccount(
                before.unit_id,
                before.project_id,
                before.district_code,
                before.unit_number,
                before.area_cm2,
                balance,
                first,
                before.owed_fen,
            )
            store.change_account(
                connection,
                after,
                self._needs_top_up(after),
                deposited=change if original_kind is EntryKind.DEPOSIT else 0,
                interest=change if original_kind is EntryKind.INTEREST else 0,
            )
        entry = found.entry
        single_unit = original_kind is EntryKind.DEPOSIT
        key = entry.postings[1].account.unit_id if single_unit else entry.project_id
        add_events(
            connection,
            [
                Event.of_aggregate(
                    ACCOUNT_TOPIC if single_unit else INTEREST_TOPIC,
                    key,
                    entry.district_code,
                    ev.EntryReversed(
                        entry_id=entry.entry_id,
                        reversal_entry_id=undo.entry_id,
                        project_id=entry.project_id,
                        district_code=entry.district_code,
                        kind=_pb_enum(pb.EntryKind, "ENTRY_KIND", entry.kind),
                        reason=reason,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return store.get_entry(connection, undo.entry_id)

    def reconcile(
        self, project_id: str, district_code: str, statements: dict[str, int]
    ) -> domain.Reconciliation:
        call = current()
        if project_id or district_code:
            call.require_district((project_id or district_code)[:6])
        with self.reader.connect() as connection:
            ledger = store.ledger_of(connection, project_id, district_code)
            held = store.accounts_of(connection, project_id, district_code)
            districts = store.project_districts(connection, statements)
        if not (project_id or district_code):
            # The city as far as the caller reaches.
            visible = call.visible_districts()
            ledger = [e for e in ledger if e.district_code in visible]
            held = [a for a in held if a.district_code in visible]
        for district in set(districts.values()):
            call.require_district(district)
        unknown = sorted(set(statements) - set(districts))
        if unknown:
            raise NotFound(
                "PROJECT_NOT_FOUND",
                f"the fund holds nothing of project {unknown[0]}",
                project_id=unknown[0],
            )
        return domain.reconcile(ledger, held, statements)

    def allocate_interest(
        self, connection: Connection, project_id: str, district_code: str, period: str, fen: int
    ) -> tuple[int, list[str]]:
        district = (project_id or district_code)[:6]
        current().require_district(district)
        scope = project_id or district_code
        now = self.now()
        locked = store.scope_accounts(connection, project_id, district_code, lock=True)
        held = store.hold_interest_period(connection, scope, period, fen, len(locked), now)
        if held:
            raise AlreadyExists(
                "INTEREST_ALLOCATED",
                f"the interest of {period} is allocated to {held} already",
                period=period,
                scope=held,
            )
        with cyclic_gc_paused():
            parts = domain.allocate_interest(fen, {u: a.balance_fen for u, a in locked.items()})
            posted = domain.interest_entries(new_id(district, "I"), period, parts, locked)
        store.insert_entries(connection, posted, now)
        changes = []
        for unit_id, part in parts.items():
            if not part:
                continue
            before = locked[unit_id]
            after = before.charged(-part, 0)
            changes.append(
                ({"interest": part, "top_up_required": self._needs_top_up(after)}, after)
            )
        store.change_accounts(connection, changes)
        entry_ids = [e.entry_id for e in posted]
        add_events(
            connection,
            [
                Event.of_aggregate(
                    INTEREST_TOPIC,
                    scope,
                    district,
                    ev.InterestAllocated(
                        project_id=project_id,
                        district_code=district,
                        period=period,
                        interest_fen=fen,
                        accounts=len(changes),
                        entry_ids=entry_ids,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return len(changes), entry_ids

    # ------------------------------------------------------------ uses

    def _use_out(self, connection: Connection, use_id: str, with_shares: bool) -> UseOut:
        view = store.get_use(connection, use_id)
        return UseOut(
            view, store.payments_of(connection, [use_id], with_shares=with_shares)[use_id]
        )

    def get_use(self, use_id: str) -> UseOut:
        with self.reader.connect() as connection:
            found = store.get_use(connection, use_id)
            if found is None:
                raise NotFound("USE_NOT_FOUND", f"no use of the fund {use_id}", use_id=use_id)
            current().require_district(found.use.district_code)
            return UseOut(found, store.payments_of(connection, [use_id], with_shares=True)[use_id])

    def list_uses(
        self,
        project_id: str,
        district_code: str,
        origin: UseOrigin | None,
        state: UseState | None,
        after: str | None,
        limit: int,
        *,
        published: bool = False,
    ) -> list[UseOut]:
        call = current()
        districts = call.scope.served if published else call.visible_districts()
        with self.reader.connect() as connection:
            found = store.list_uses(
                connection,
                districts,
                project_id,
                district_code,
                origin,
                state,
                after,
                limit,
                published_only=published,
            )
            paid = store.payments_of(
                connection, [v.use.use_id for v in found], with_shares=published
            )
        return [UseOut(v, paid[v.use.use_id]) for v in found]

    def _locked_use(self, connection: Connection, use_id: str) -> store.UseView:
        found = store.get_use(connection, use_id, lock=True)
        if found is None:
            raise NotFound("USE_NOT_FOUND", f"no use of the fund {use_id}", use_id=use_id)
        current().require_district(found.use.district_code)
        return found

    def _commit_change(
        self,
        connection: Connection,
        before: Use,
        change: UseChange,
        now: dt.datetime,
        *,
        bank_reference: str = "",
        **times: dt.datetime,
    ) -> None:
        """Writes a changed use, its payment (entry, shares, charged accounts) and its
        events."""
        store.update_use(connection, change.use, **times)
        if change.payment is not None:
            payment = change.payment
            entry_id = payment.entry.entry_id if payment.entry else ""
            store.insert_payment(
                connection, change.use.use_id, payment, entry_id, bank_reference, now
            )
            if payment.entry is not None:
                store.insert_entries(connection, [payment.entry], now)
            debited = {s.unit_id: s.debited_fen for s in payment.shares}
            store.change_accounts(
                connection,
                [
                    (
                        {"used": debited[a.unit_id], "top_up_required": self._needs_top_up(a)},
                        a,
                    )
                    for a in change.accounts
                ],
            )
        add_events(
            connection,
            [
                *(self._use_event(e, before) for e in change.events),
                *(self._top_up_requested(a, now) for a in change.top_up_requested),
            ],
        )

    def approve_use(self, use_id: str, works_kind: WorksKind | None, budget_fen: int) -> UseOut:
        with self.engine.begin() as connection:
            before = self._locked_use(connection, use_id).use
            now = self.now()
            change = domain.approve(before, works_kind, budget_fen, self.rules, now)
            self._commit_change(connection, before, change, now, approved_at=now)
            return self._use_out(connection, use_id, with_shares=False)

    def reject_use(self, use_id: str, reason: str) -> UseOut:
        with self.engine.begin() as connection:
            before = self._locked_use(connection, use_id).use
            now = self.now()
            self._commit_change(connection, before, domain.reject(before, reason, now), now)
            return self._use_out(connection, use_id, with_shares=False)

    def cancel_use(self, use_id: str, reason: str) -> UseOut:
        with self.engine.begin() as connection:
            before = self._locked_use(connection, use_id).use
            now = self.now()
            self._commit_change(connection, before, domain.cancel(before, reason, now), now)
            return self._use_out(connection, use_id, with_shares=False)

    def pay_works(
        self, connection: Connection, use_id: str, amount_fen: int, bank_reference: str
    ) -> tuple[UseOut, store.PaymentView]:
        before = self._locked_use(connection, use_id).use
        charged = store.lock_accounts(connection, before.unit_ids)
        now = self.now()
        change = domain.pay_works(
            before,
            amount_fen,
            new_id(before.district_code, "E"),
            charged,
            self.rules,
            now,
        )
        self._commit_change(connection, before, change, now, bank_reference=bank_reference)
        return self._use_out(connection, use_id, with_shares=False), _paid(change, now)

    def complete_use(
        self, connection: Connection, use_id: str, final_cost_fen: int
    ) -> tuple[UseOut, store.PaymentView | None]:
        before = self._locked_use(connection, use_id).use
        charged = store.lock_accounts(connection, before.unit_ids)
        now = self.now()
        change = domain.complete(
            before,
            final_cost_fen,
            new_id(before.district_code, "E"),
            charged,
            self.rules,
            now,
        )
        completed = {"completed_at": now} if change.use.state is UseState.COMPLETED else {}
        self._commit_change(connection, before, change, now, **completed)
        settlement = _paid(change, now) if change.payment is not None else None
        return self._use_out(connection, use_id, with_shares=False), settlement

    def request_emergency(
        self, connection: Connection, project_id: str, draft_use_id: str, filing: EmergencyFiling
    ) -> UseOut:
        call = current()
        district = project_id[:6]
        call.require_district(district)
        expected = _ROLE_REQUESTERS.get(call.principal.role)
        if expected is not None and filing.requester not in (None, expected):
            v = Violations()
            v.add("requester", f"the caller requests as {expected.value}")
            v.raise_if_any()
        draft = self._locked_use(connection, draft_use_id).use if draft_use_id else None
        accounts = store.project_accounts(connection, project_id)
        now = self.now()
        change = domain.request_emergency(
            new_id(district, "W"),
            project_id,
            district,
            filing,
            accounts,
            self.rules,
            now,
            self.calendar.local_date(now),
            self.calendar.add_working_days,
            draft,
        )
        if draft is None:
            store.insert_use(connection, change.use, now, notified_at=now)
            add_events(connection, [self._use_event(e, change.use) for e in change.events])
        else:
            self._commit_change(connection, draft, change, now, notified_at=now)
        return self._use_out(connection, change.use.use_id, with_shares=False)

    def escalate_overdue(self) -> int:
        """Emergency requests not decided by their deadline are escalated, each once."""
        now = self.now()
        today = self.calendar.local_date(now)
        with self.engine.begin() as connection:
            overdue = store.overdue_requests(connection, today, TIMER_BATCH)
            for view in overdue:
                change = domain.escalate(view.use, today, now)
                self._commit_change(connection, view.use, change, now, escalated_at=now)
        return len(overdue)

    # ------------------------------------------------------------ events announced

    def _use_event(self, event: UseEvent, before: Use) -> Event:
        use = event.use
        at = timestamp(event.occur_time)
        ids = {
            "use_id": use.use_id,
            "project_id": use.project_id,
            "district_code": use.district_code,
            "occur_time": at,
        }
        kind = emergency_kind_number(use.emergency)
        t = UseEventType
        if event.type is t.USE_OPENED:
            message = ev.UseOpened(
                **ids,
                vote_id=use.decision.vote_id,
                matter_id=use.decision.matter_id,
                budget_fen=use.budget_fen,
                units=len(use.unit_ids),
            )
        elif event.type is t.EMERGENCY_DRAFTED:
            message = ev.EmergencyDrafted(**ids, alarm_id=use.emergency.alarm_id, kind=kind)
        elif event.type is t.EMERGENCY_REQUESTED:
            message = ev.EmergencyRequested(
                **ids,
                kind=kind,
                requester=_pb_enum(
                    pb.EmergencyRequester, "EMERGENCY_REQUESTER", use.emergency.requester
                ),
                title=use.title,
                budget_fen=use.budget_fen,
                unit_ids=list(use.unit_ids),
                extremely_urgent=use.emergency.extremely_urgent,
                approve_by=to_date(use.emergency.approve_by),
            )
        elif event.type is t.EMERGENCY_ESCALATED:
            message = ev.EmergencyEscalated(
                **ids, kind=kind, approve_by=to_date(use.emergency.approve_by)
            )
        elif event.type is t.USE_APPROVED:
            message = ev.UseApproved(
                **ids,
                works_kind=works_kind_number(use.works_kind),
                budget_fen=use.budget_fen,
                reapproval=before.state is UseState.REAPPROVAL_REQUIRED,
            )
        elif event.type is t.EMERGENCY_APPROVED:
            message = ev.EmergencyApproved(
                **ids,
                kind=kind,
                works_kind=works_kind_number(use.works_kind),
                budget_fen=use.budget_fen,
                first_payment_limit_fen=domain.first_payment_limit_fen(use, self.rules) or 0,
                late=before.state is UseState.ESCALATED,
            )
        elif event.type is t.USE_REJECTED:
            message = ev.UseRejected(**ids, reason=use.reason)
        elif event.type is t.USE_CANCELLED:
            message = ev.UseCancelled(**ids, reason=use.reason)
        elif event.type is t.WORKS_PAID:
            payment = event.payment
            listed = len(payment.shares) <= self.settings.fund_max_event_shares
            message = ev.WorksPaid(
                **ids,
                payment=payment_message(
                    payment,
                    payment.entry.entry_id if payment.entry else "",
                    event.occur_time,
                    payment.debited_fen,
                    payment.owed_fen,
                    with_shares=listed,
                ),
                paid_fen=use.paid_fen,
                budget_fen=use.budget_fen,
                shares_omitted=not listed,
            )
        elif event.type is t.REAPPROVAL_REQUIRED:
            message = ev.ReapprovalRequired(
                **ids, budget_fen=use.budget_fen, final_cost_fen=use.final_cost_fen or 0
            )
        else:
            message = ev.UseCompleted(
                **ids,
                origin=_pb_enum(pb.UseOrigin, "USE_ORIGIN", use.origin),
                budget_fen=use.budget_fen,
                final_cost_fen=use.final_cost_fen or 0,
                paid_fen=use.paid_fen,
                owed_fen=use.owed_fen,
            )
        return Event.of_aggregate(USE_TOPIC, use.use_id, use.district_code, message)

    # ------------------------------------------------------------ events of other services

    def _served(self, district: str) -> bool:
        return district in self.settings.served_districts

    def on_units_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        if not self._served(message.district_code):
            return
        now = self.now()
        opened = set(
            store.open_accounts(
                connection,
                [
                    {
                        "unit_id": u.unit_id,
                        "project_id": message.project_id,
                        "district_code": message.district_code,
                        "unit_number": u.number,
                        "area_cm2": u.exclusive_area_cm2,
                        "owner_key": u.owner_key,
                        "opened_at": now,
                    }
                    for u in message.units
                ],
            )
        )
        add_events(
            connection,
            [
                Event.of_aggregate(
                    ACCOUNT_TOPIC,
                    u.unit_id,
                    message.district_code,
                    ev.AccountOpened(
                        unit_id=u.unit_id,
                        project_id=message.project_id,
                        district_code=message.district_code,
                        unit_number=u.number,
                        exclusive_area_cm2=u.exclusive_area_cm2,
                        occur_time=timestamp(now),
                    ),
                )
                for u in message.units
                if u.unit_id in opened
            ],
        )

    def on_ownership_transferred(self, connection: Connection, message, meta: EventMeta) -> None:
        """The balance stays with the unit (Art. 28): only who may read it changes."""
        store.set_owner(connection, message.unit_id, message.owner_key)

    def on_decision_adopted(self, connection: Connection, message, meta: EventMeta) -> None:
        if message.matter_type != voting_pb.MATTER_TYPE_USE_FUND:
            return
        if not self._served(message.district_code):
            return
        result = message.result
        day = message.decision_date
        decision = Decision(
            vote_id=message.vote_id,
            matter_id=message.matter_id,
            matter_type=domain.USE_FUND_MATTER,
            title=message.title,
            passed=result.passed,
            amount_fen=message.fund_amount_fen,
            unit_ids=tuple(message.unit_ids),
            decision_date=dt.date(day.year, day.month, day.day),
            participating_area_cm2=result.participating_area_cm2,
            participating_owners=result.participating_owners,
            yes_area_cm2=result.yes_area_cm2,
            yes_owners=result.yes_owners,
        )
        if store.use_exists(connection, decision=store.decision_key(decision)):
            return
        now = self.now()
        self._open_from_event(
            connection,
            meta,
            lambda: domain.open_decided_use(
                new_id(message.district_code, "W"),
                message.project_id,
                message.district_code,
                decision,
                store.project_accounts(connection, message.project_id),
                now,
            ),
            now,
        )

    def on_alarm_escalated(self, connection: Connection, message, meta: EventMeta) -> None:
        alarm = message.alarm
        kind = enum_name(iot_pb.AlarmKind, "ALARM_KIND", message.kind or alarm.kind)
        if kind not in self.rules.fire_system_fault_alarms or not self._served(
            message.district_code
        ):
            return
        if store.use_exists(connection, alarm_id=alarm.id):
            return
        units = store.project_accounts(connection, message.project_id)
        if not units:
            return
        now = self.now()
        self._open_from_event(
            connection,
            meta,
            lambda: domain.draft_from_alarm(
                new_id(message.district_code, "W"),
                message.project_id,
                message.district_code,
                alarm.id,
                kind,
                sorted(units),
                self.rules,
                now,
            ),
            now,
        )

    def _open_from_event(
        self, connection: Connection, meta: EventMeta, opening, now: dt.datetime
    ) -> None:
        """Opens the use an event asks for; one the rules refuse is logged with its reason and
        stores nothing (retrying it would change nothing)."""
        try:
            change = opening()
        except DomainError as refused:
            log_refused(meta, refused, "event opens no use")
            return
        if change is None:
            return
        store.insert_use(connection, change.use, now)
        add_events(connection, [self._use_event(e, change.use) for e in change.events])

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.registry.v1.UnitsRegistered": Handler(
                registry_events.UnitsRegistered, self.on_units_registered
            ),
            "wuye.registry.v1.UnitOwnershipTransferred": Handler(
                registry_events.UnitOwnershipTransferred, self.on_ownership_transferred
            ),
            "wuye.voting.v1.DecisionAdopted": Handler(
                voting_events.DecisionAdopted, self.on_decision_adopted
            ),
            "wuye.iot.v1.AlarmEscalated": Handler(
                iot_events.AlarmEscalated, self.on_alarm_escalated
            ),
        }
