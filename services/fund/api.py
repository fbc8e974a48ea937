"""The gRPC face of the maintenance fund: requests in, use cases run, responses out. Money is
integer fen on the wire as in the rules; amounts past the configured ceiling are refused here,
before anything reaches the database's 64-bit columns."""

from __future__ import annotations

import re

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.context import current
from wuye.core.errors import FieldViolation, InvalidArgument, Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route, district_of
from wuye.core.paging import next_token, read_page
from wuye.core.wire import check_request_id, check_text, enum_name, timestamp, to_date
from wuye.fund import store
from wuye.fund.commands import (
    Fund,
    UseOut,
    emergency_kind_number,
    payment_message,
    works_kind_number,
)
from wuye.fund.domain import (
    AccountKind,
    DepositKind,
    EmergencyFiling,
    EmergencyKind,
    EmergencyRequester,
    UseOrigin,
    UseState,
    WorksKind,
)
from wuye.fund.v1 import fund_service_pb2 as pb
from wuye.fund.v1 import fund_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FundService"].full_name

_AUTHORITY = tuple(AUTHORITIES)
# Those who take part in a use: they follow it.
_PARTIES = (*_AUTHORITY, Role.SERVICE, Role.OWNERS_COMMITTEE, Role.ENTERPRISE, Role.SUB_DISTRICT)
_REQUESTERS = (Role.OWNERS_COMMITTEE, Role.ENTERPRISE, Role.SUB_DISTRICT)

ROUTES: dict[str, Route] = {
    # An owner reads their own unit's account (their token's subject is the owner key).
    "GetAccount": Route(allow(*_AUTHORITY, Role.SERVICE, Role.OWNER), "unit_id"),
    "ListAccounts": Route(allow(*_AUTHORITY, Role.SERVICE, Role.SUB_DISTRICT), "district_code"),
    "RecordDeposit": Route(allow(*_AUTHORITY, Role.SERVICE), "unit_id"),
    # Published (Art. 30): totals only, no account of a named person.
    "GetProjectFund": Route(public(), "project_id"),
    "ListLedgerEntries": Route(allow(*_AUTHORITY, Role.SERVICE, Role.OWNER), "unit_id"),
    "ReverseEntry": Route(allow(*_AUTHORITY), "entry_id"),
    "ReconcileFund": Route(allow(*_AUTHORITY, Role.SERVICE), "district_code"),
    "AllocateInterest": Route(allow(*_AUTHORITY), "district_code"),
    "GetUse": Route(allow(*_PARTIES), "use_id"),
    "ListUses": Route(allow(*_PARTIES), "district_code"),
    "ApproveUse": Route(allow(*_AUTHORITY), "use_id"),
    "RejectUse": Route(allow(*_AUTHORITY), "use_id"),
    "CancelUse": Route(allow(*_AUTHORITY, *_REQUESTERS), "use_id"),
    "PayWorks": Route(allow(*_AUTHORITY), "use_id"),
    "CompleteUse": Route(allow(*_AUTHORITY), "use_id"),
    "RequestEmergencyUse": Route(allow(*_AUTHORITY, *_REQUESTERS), "project_id"),
    "ListPublishedUses": Route(public(), "district_code"),
}

_PERIOD = re.compile(r"[0-9A-Za-z-]+", re.ASCII)


def _enum(enum_type, prefix: str, number: int, domain_type):
    """The domain's member for a wire enum value; None for the unspecified value or a number
    the enum does not have (the rules name what is missing)."""
    name = enum_name(enum_type, prefix, number)
    return domain_type(name) if name else None


class FundApi(pb_grpc.FundServiceServicer):
    def __init__(self, fund: Fund) -> None:
        self._fund = fund
        self._settings = fund.settings
        self._city = dict(fund.settings.city_districts)

    # ------------------------------------------------------------ shared checks

    def _amount(self, v: Violations, field: str, value: int, *, zero: bool = False) -> None:
        ceiling = self._settings.fund_max_amount_fen
        low = 0 if zero else 1
        v.check(low <= value <= ceiling, field, f"between {low} and {ceiling} fen")

    def _text(self, v: Violations, field: str, value: str, required: bool = True) -> None:
        check_text(v, field, value, self._settings.max_text_length, required)

    def _id_field(self, request, field: str) -> None:
        """An id field the route does not check: refused unless it starts with a district."""
        district_of(request, field, self._city)

    def _page(self, request, filters):
        return read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )

    def _idempotent(self, method: str, request, response_type, command):
        return run_idempotent(
            self._fund.engine,
            pii_key=self._settings.pii_key,
            method=method,
            request_id=request.request_id,
            request=request,
            response_type=response_type,
            command=command,
        )

    # ------------------------------------------------------------ accounts

    def GetAccount(self, request: pb.GetAccountRequest, context) -> pb.GetAccountResponse:
        return pb.GetAccountResponse(
            account=account_message(self._fund.get_account(request.unit_id))
        )

    def ListAccounts(self, request: pb.ListAccountsRequest, context):
        self._id_field(request, "project_id")
        page = self._page(
            request, [request.project_id, request.district_code, request.top_up_required]
        )
        found = self._fund.list_accounts(
            request.project_id,
            request.district_code,
            request.top_up_required,
            page.after,
            page.size + 1,
        )
        return pb.ListAccountsResponse(
            accounts=[account_message(a) for a in found[: page.size]],
            next_page_token=next_token(page, [a.account.unit_id for a in found]),
        )

    def RecordDeposit(self, request: pb.RecordDepositRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        kind = _enum(pb.DepositKind, "DEPOSIT_KIND", request.kind, DepositKind)
        v.check(kind is not None, "kind", "is FIRST or TOP_UP")
        self._amount(v, "amount_fen", request.amount_fen, zero=True)
        ceiling = self._settings.fund_max_cost_fen_per_m2
        v.check(
            0 <= request.construction_cost_fen_per_m2 <= ceiling,
            "construction_cost_fen_per_m2",
            f"between 0 and {ceiling} fen",
        )
        self._text(v, "bank_reference", request.bank_reference, required=False)
        v.raise_if_any()

        def command(connection) -> pb.RecordDepositResponse:
            account, entry, amount, rate = self._fund.record_deposit(
                connection,
                request.unit_id,
                kind,
                request.amount_fen,
                request.construction_cost_fen_per_m2,
            )
            return pb.RecordDepositResponse(
                account=account_message(account),
                entry=entry_message(entry),
                amount_fen=amount,
                rate=f"{rate.numerator}/{rate.denominator}",
            )

        return self._idempotent("RecordDeposit", request, pb.RecordDepositResponse, command)

    # ------------------------------------------------------------ the ledger

    def GetProjectFund(self, request: pb.GetProjectFundRequest, context):
        totals, counted = self._fund.project_fund(request.project_id)
        return pb.GetProjectFundResponse(
            fund=pb.ProjectFund(
                project_id=request.project_id,
                district_code=totals.district_code or request.project_id[:6],
                accounts=totals.accounts,
                balance_fen=totals.balance_fen,
                deposited_fen=totals.deposited_fen,
                interest_fen=totals.interest_fen,
                used_fen=totals.used_fen,
                owed_fen=totals.owed_fen,
                top_up_required_accounts=totals.top_ups,
                uses=counted.uses,
                completed_uses=counted.completed,
                as_of_time=timestamp(self._fund.now()),
            )
        )

    def ListLedgerEntries(self, request: pb.ListLedgerEntriesRequest, context):
        v = Violations()
        v.check(
            bool(request.project_id) != bool(request.unit_id),
            "project_id",
            "name one of project_id and unit_id",
        )
        v.raise_if_any()
        self._id_field(request, "project_id")
        page = self._page(request, [request.project_id, request.unit_id])
        before = None
        if page.after is not None:
            if not page.after.isdigit():
                raise InvalidArgument(
                    [FieldViolation("page_token", "is not a token this API issued")]
                )
            before = int(page.after)
        found = self._fund.list_entries(request.project_id, request.unit_id, before, page.size + 1)
        return pb.ListLedgerEntriesResponse(
            entries=[entry_message(e) for e in found[: page.size]],
            next_page_token=next_token(page, [str(e.seq) for e in found]),
        )

    def ReverseEntry(self, request: pb.ReverseEntryRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        self._text(v, "reason", request.reason)
        v.raise_if_any()

        def command(connection) -> pb.ReverseEntryResponse:
            reversal = self._fund.reverse_entry(connection, request.entry_id, request.reason)
            return pb.ReverseEntryResponse(reversal=entry_message(reversal))

        return self._idempotent("ReverseEntry", request, pb.ReverseEntryResponse, command)

    def ReconcileFund(self, request: pb.ReconcileFundRequest, context):
        v = Violations()
        v.check(
            not (request.project_id and request.district_code),
            "district_code",
            "name a project, a district or neither (the city), not both",
        )
        limit = self._settings.fund_max_bank_statements
        v.check(len(request.bank_statements) <= limit, "bank_statements", f"at most {limit}")
        statements: dict[str, int] = {}
        for n, statement in enumerate(request.bank_statements[:limit]):
            field = f"bank_statements[{n}]"
            self._id_field(statement, "project_id")
            v.check(bool(statement.project_id), f"{field}.project_id", "is required")
            v.check(statement.project_id not in statements, f"{field}.project_id", "given twice")
            self._amount(v, f"{field}.balance_fen", statement.balance_fen, zero=True)
            statements[statement.project_id] = statement.balance_fen
        v.raise_if_any()
        self._id_field(request, "project_id")
        result = self._fund.reconcile(request.project_id, request.district_code, statements)
        districts = {p.project_id: p for p in result.projects}
        return pb.ReconcileFundResponse(
            discrepancies=[
                pb.ProjectReconciliation(
                    project_id=p.project_id,
                    district_code=p.project_id[:6],
                    book_balance_fen=p.book_balance_fen,
                    unit_balances_fen=p.unit_balances_fen,
                    bank_statement_given=p.bank_statement_fen is not None,
                    bank_statement_fen=p.bank_statement_fen or 0,
                    reconciled=p.reconciled,
                )
                for p in districts.values()
                if not p.reconciled
            ],
            projects=len(result.projects),
            book_balance_fen=result.book_balance_fen,
            unit_balances_fen=result.unit_balances_fen,
            unbalanced_entry_ids=list(result.unbalanced_entry_ids),
            reconciled=result.reconciled,
            as_of_time=timestamp(self._fund.now()),
        )

    def AllocateInterest(self, request: pb.AllocateInterestRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        v.check(
            bool(request.project_id) != bool(request.district_code),
            "project_id",
            "name exactly one of project_id and district_code",
        )
        limit = self._settings.fund_max_period_length
        v.check(
            len(request.period) <= limit and bool(_PERIOD.fullmatch(request.period)),
            "period",
            f"a period such as 2026 or 2026-H1: letters, digits and '-', at most {limit}",
        )
        self._amount(v, "interest_fen", request.interest_fen)
        v.raise_if_any()
        self._id_field(request, "project_id")

        def command(connection) -> pb.AllocateInterestResponse:
            accounts, entry_ids = self._fund.allocate_interest(
                connection,
                request.project_id,
                request.district_code,
                request.period,
                request.interest_fen,
            )
            return pb.AllocateInterestResponse(
                accounts=accounts, interest_fen=request.interest_fen, entry_ids=entry_ids
            )

        return self._idempotent("AllocateInterest", request, pb.AllocateInterestResponse, command)

    # ------------------------------------------------------------ uses

    def GetUse(self, request: pb.GetUseRequest, context) -> pb.GetUseResponse:
        return pb.GetUseResponse(use=use_message(self._fund.get_use(request.use_id), True))

    def ListUses(self, request: pb.ListUsesRequest, context) -> pb.ListUsesResponse:
        v = Violations()
        known_origin = request.origin in pb.UseOrigin.values()
        v.check(known_origin, "origin", "is not a use origin")
        v.check(request.state in pb.UseState.values(), "state", "is not a use state")
        v.raise_if_any()
        self._id_field(request, "project_id")
        origin = _enum(pb.UseOrigin, "USE_ORIGIN", request.origin, UseOrigin)
        state = _enum(pb.UseState, "USE_STATE", request.state, UseState)
        page = self._page(
            request, [request.project_id, request.district_code, request.origin, request.state]
        )
        found = self._fund.list_uses(
            request.project_id, request.district_code, origin, state, page.after, page.size + 1
        )
        return pb.ListUsesResponse(
            uses=[use_message(u, False) for u in found[: page.size]],
            next_page_token=next_token(page, [u.view.use.use_id for u in found]),
        )

    def ApproveUse(self, request: pb.ApproveUseRequest, context) -> pb.ApproveUseResponse:
        v = Violations()
        self._amount(v, "budget_fen", request.budget_fen)
        v.raise_if_any()
        works_kind = _enum(pb.WorksKind, "WORKS_KIND", request.works_kind, WorksKind)
        approved = self._fund.approve_use(request.use_id, works_kind, request.budget_fen)
        return pb.ApproveUseResponse(use=use_message(approved, False))

    def RejectUse(self, request: pb.RejectUseRequest, context) -> pb.RejectUseResponse:
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        rejected = self._fund.reject_use(request.use_id, request.reason)
        return pb.RejectUseResponse(use=use_message(rejected, False))

    def CancelUse(self, request: pb.CancelUseRequest, context) -> pb.CancelUseResponse:
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        cancelled = self._fund.cancel_use(request.use_id, request.reason)
        return pb.CancelUseResponse(use=use_message(cancelled, False))

    def PayWorks(self, request: pb.PayWorksRequest, context) -> pb.PayWorksResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        self._amount(v, "amount_fen", request.amount_fen)
        self._text(v, "bank_reference", request.bank_reference, required=False)
        v.raise_if_any()

        def command(connection) -> pb.PayWorksResponse:
            out, paid = self._fund.pay_works(
                connection, request.use_id, request.amount_fen, request.bank_reference
            )
            return pb.PayWorksResponse(
                use=use_message(out, False),
                payment=paid_message(paid, True),
            )

        return self._idempotent("PayWorks", request, pb.PayWorksResponse, command)

    def CompleteUse(self, request: pb.CompleteUseRequest, context) -> pb.CompleteUseResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        self._amount(v, "final_cost_fen", request.final_cost_fen)
        v.raise_if_any()

        def command(connection) -> pb.CompleteUseResponse:
            out, settlement = self._fund.complete_use(
                connection, request.use_id, request.final_cost_fen
            )
            return pb.CompleteUseResponse(
                use=use_message(out, False),
                settlement=paid_message(settlement, True) if settlement else None,
            )

        return self._idempotent("CompleteUse", request, pb.CompleteUseResponse, command)

    def RequestEmergencyUse(self, request: pb.RequestEmergencyUseRequest, context):
        v = Violations()
        settings = self._settings
        check_request_id(v, request.request_id)
        v.check(bool(request.project_id), "project_id", "is required")
        self._text(v, "title", request.title)
        self._amount(v, "budget_fen", request.budget_fen)
        units = settings.fund_max_use_units
        v.check(len(request.unit_ids) <= units, "unit_ids", f"at most {units}")
        evidence = settings.fund_max_evidence
        v.check(len(request.evidence) <= evidence, "evidence", f"at most {evidence} references")
        for n, reference in enumerate(request.evidence[:evidence]):
            self._text(v, f"evidence[{n}]", reference)
        v.raise_if_any()
        if request.draft_use_id:
            self._id_field(request, "draft_use_id")
        filing = EmergencyFiling(
            title=request.title,
            kind=_enum(pb.EmergencyKind, "EMERGENCY_KIND", request.kind, EmergencyKind),
            requester=_enum(
                pb.EmergencyRequester,
                "EMERGENCY_REQUESTER",
                request.requester,
                EmergencyRequester,
            ),
            works_kind=_enum(pb.WorksKind, "WORKS_KIND", request.works_kind, WorksKind),
            budget_fen=request.budget_fen,
            unit_ids=tuple(request.unit_ids),
            evidence=tuple(request.evidence),
            extremely_urgent=request.extremely_urgent,
        )

        def command(connection) -> pb.RequestEmergencyUseResponse:
            out = self._fund.request_emergency(
                connection, request.project_id, request.draft_use_id, filing
            )
            return pb.RequestEmergencyUseResponse(use=use_message(out, False))

        return self._idempotent(
            "RequestEmergencyUse", request, pb.RequestEmergencyUseResponse, command
        )

    def ListPublishedUses(self, request: pb.ListPublishedUsesRequest, context):
        self._id_field(request, "project_id")
        if request.project_id:
            current().scope.check_served(request.project_id[:6])
        page = self._page(request, [request.project_id, request.district_code])
        found = self._fund.list_uses(
            request.project_id,
            request.district_code,
            None,
            None,
            page.after,
            page.size + 1,
            published=True,
        )
        return pb.ListPublishedUsesResponse(
            uses=[use_message(u, True) for u in found[: page.size]],
            next_page_token=next_token(page, [u.view.use.use_id for u in found]),
        )


# ---------------------------------------------------------------- domain -> wire


def account_message(view: store.AccountView) -> pb.UnitAccount:
    a = view.account
    return pb.UnitAccount(
        unit_id=a.unit_id,
        project_id=a.project_id,
        district_code=a.district_code,
        unit_number=a.unit_number,
        exclusive_area_cm2=a.area_cm2,
        balance_fen=a.balance_fen,
        first_deposit_fen=a.first_deposit_fen,
        owed_fen=a.owed_fen,
        deposited_fen=view.deposited_fen,
        interest_fen=view.interest_fen,
        used_fen=view.used_fen,
        top_up_required=view.top_up_required,
        open_time=timestamp(view.opened_at),
    )


def entry_message(view: store.EntryView) -> pb.LedgerEntry:
    e = view.entry
    return pb.LedgerEntry(
        entry_id=e.entry_id,
        project_id=e.project_id,
        district_code=e.district_code,
        kind=pb.EntryKind.Value(f"ENTRY_KIND_{e.kind.value}"),
        postings=[
            pb.Posting(
                account_kind=pb.LedgerAccountKind.Value(
                    f"LEDGER_ACCOUNT_KIND_{p.account.kind.value}"
                ),
                account_id=p.account.unit_id
                if p.account.kind is AccountKind.UNIT
                else p.account.project_id,
                debit_fen=max(p.amount_fen, 0),
                credit_fen=max(-p.amount_fen, 0),
            )
            for p in e.postings
        ],
        use_id=e.use_id,
        period=e.period,
        reverses_entry_id=e.reverses,
        reversed_by_entry_id=view.reversed_by,
        reason=e.reason,
        post_time=timestamp(view.posted_at),
    )


def paid_message(paid: store.PaymentView, with_shares: bool) -> pb.Payment:
    return payment_message(
        paid.payment,
        paid.entry_id,
        paid.paid_at,
        paid.debited_fen,
        paid.owed_fen,
        with_shares,
    )


def use_message(out: UseOut, with_shares: bool) -> pb.Use:
    view = out.view
    use = view.use
    message = pb.Use(
        use_id=use.use_id,
        project_id=use.project_id,
        district_code=use.district_code,
        title=use.title,
        state=pb.UseState.Value(f"USE_STATE_{use.state.value}"),
        origin=pb.UseOrigin.Value(f"USE_ORIGIN_{use.origin.value}"),
        works_kind=works_kind_number(use.works_kind),
        budget_fen=use.budget_fen,
        unit_ids=list(use.unit_ids),
        paid_fen=use.paid_fen,
        owed_fen=use.owed_fen,
        final_cost_fen=use.final_cost_fen or 0,
        payments=[paid_message(p, with_shares) for p in out.payments],
        reject_reason=use.reason if use.state is UseState.REJECTED else "",
        cancel_reason=use.reason if use.state is UseState.CANCELLED else "",
        open_time=timestamp(view.opened_at),
        approve_time=timestamp(view.approved_at),
        complete_time=timestamp(view.completed_at),
    )
    if use.decision is not None:
        d = use.decision
        message.decision.CopyFrom(
            pb.Decision(
                vote_id=d.vote_id,
                matter_id=d.matter_id,
                title=d.title,
                decision_date=to_date(d.decision_date),
                participating_area_cm2=d.participating_area_cm2,
                participating_owners=d.participating_owners,
                yes_area_cm2=d.yes_area_cm2,
                yes_owners=d.yes_owners,
                passed=d.passed,
            )
        )
    if use.emergency is not None:
        e = use.emergency
        message.emergency.CopyFrom(
            pb.Emergency(
                kind=emergency_kind_number(e),
                requester=pb.EmergencyRequester.Value(f"EMERGENCY_REQUESTER_{e.requester.value}")
                if e.requester
                else 0,
                evidence=list(e.evidence),
                extremely_urgent=e.extremely_urgent,
                notify_time=timestamp(view.notified_at),
                approve_by=to_date(e.approve_by) if e.approve_by else None,
                escalate_time=timestamp(view.escalated_at),
                alarm_id=e.alarm_id,
            )
        )
    return message
