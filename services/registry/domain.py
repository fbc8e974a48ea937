"""Rules of registry and filing (DOMAIN.md section 1). Pure: no IO, no wire types.

Enterprises move through one state machine driven by filings; projects are served by one filed
enterprise at a time, taken over with a handover inspection and left by a filed or unfiled exit.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from wuye.core.errors import FailedPrecondition, PermissionDenied, Violations
from wuye.core.ids import credit_code_problem, resident_id_problem


class EnterpriseStatus(StrEnum):
    PENDING = "PENDING"
    FILED = "FILED"
    REJECTED = "REJECTED"
    EXITED = "EXITED"


class FilingKind(StrEnum):
    INITIAL = "INITIAL"
    CHANGE = "CHANGE"
    EXIT = "EXIT"


class FilingState(StrEnum):
    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class ProjectType(StrEnum):
    RESIDENTIAL = "RESIDENTIAL"
    OFFICE = "OFFICE"
    COMMERCIAL = "COMMERCIAL"
    HOSPITAL = "HOSPITAL"


class OwnerKind(StrEnum):
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"
    DEVELOPER_UNSOLD = "DEVELOPER_UNSOLD"


class TransferReason(StrEnum):
    SALE = "SALE"
    INHERITANCE = "INHERITANCE"
    GIFT = "GIFT"


class FeeMethod(StrEnum):
    LUMP_SUM = "LUMP_SUM"
    COMMISSION = "COMMISSION"


class CommitteeKind(StrEnum):
    OWNERS = "OWNERS"
    TRANSITIONAL = "TRANSITIONAL"


class CommitteeRole(StrEnum):
    DIRECTOR = "DIRECTOR"
    DEPUTY_DIRECTOR = "DEPUTY_DIRECTOR"
    MEMBER = "MEMBER"


# ---------------------------------------------------------------- the enterprise state machine

# Which filing an enterprise may submit in each status (None: not yet known to the registry).
FILEABLE: dict[EnterpriseStatus | None, frozenset[FilingKind]] = {
    None: frozenset({FilingKind.INITIAL}),
    EnterpriseStatus.REJECTED: frozenset({FilingKind.INITIAL}),
    EnterpriseStatus.EXITED: frozenset({FilingKind.INITIAL}),
    EnterpriseStatus.PENDING: frozenset(),
    EnterpriseStatus.FILED: frozenset({FilingKind.CHANGE, FilingKind.EXIT}),
}

# The enterprise's status after a filing of each kind is submitted, approved or rejected.
ON_SUBMIT: dict[FilingKind, EnterpriseStatus | None] = {
    FilingKind.INITIAL: EnterpriseStatus.PENDING,
    FilingKind.CHANGE: None,  # unchanged until approved
    FilingKind.EXIT: None,
}
ON_REVIEW: dict[tuple[FilingKind, Decision], EnterpriseStatus | None] = {
    (FilingKind.INITIAL, Decision.APPROVE): EnterpriseStatus.FILED,
    (FilingKind.INITIAL, Decision.REJECT): EnterpriseStatus.REJECTED,
    (FilingKind.CHANGE, Decision.APPROVE): None,
    (FilingKind.CHANGE, Decision.REJECT): None,
    (FilingKind.EXIT, Decision.APPROVE): EnterpriseStatus.EXITED,
    (FilingKind.EXIT, Decision.REJECT): None,
}

CHANGEABLE_FIELDS = ("name", "address", "legal_representative", "contact_phone")


@dataclass(frozen=True)
class Particulars:
    """What an enterprise files about itself; the contact phone arrives whole and is kept only
    masked and as a keyed hash."""

    name: str
    address: str
    legal_representative: str
    contact_phone_masked: str
    contact_phone_key: str


@dataclass(frozen=True)
class Enterprise:
    credit_code: str
    district_code: str
    particulars: Particulars
    status: EnterpriseStatus
    active_project_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Filing:
    filing_id: str
    credit_code: str
    district_code: str
    kind: FilingKind
    state: FilingState
    submitted_at: dt.datetime
    # CHANGE: the proposed particulars and the names of the fields that change.
    proposed: Particulars | None = None
    changed_fields: tuple[str, ...] = ()
    exit_reason: str = ""
    rejection_reason: str = ""
    reviewer: str = ""
    reviewed_at: dt.datetime | None = None


def check_may_file(existing: Enterprise | None, kind: FilingKind, pending: Filing | None) -> None:
    status = existing.status if existing else None
    if pending is not None:
        raise FailedPrecondition(
            "FILING_ALREADY_PENDING",
            f"filing {pending.filing_id} of {pending.credit_code} awaits review",
            filing_id=pending.filing_id,
        )
    if kind not in FILEABLE[status]:
        if existing is None:
            raise FailedPrecondition(
                "ENTERPRISE_NOT_FILED", "the enterprise has no approved filing yet"
            )
        raise FailedPrecondition(
            "ENTERPRISE_STATUS_FORBIDS_FILING",
            f"an enterprise in status {status} cannot file a {kind.lower()} filing",
            status=str(status),
        )


def check_exit_allowed(enterprise: Enterprise) -> None:
    """An enterprise may not leave the market while it still serves projects: it files each
    project exit first."""
    if enterprise.active_project_count:
        raise FailedPrecondition(
            "ENTERPRISE_SERVES_PROJECTS",
            f"{enterprise.credit_code} still serves {enterprise.active_project_count} project(s); "
            "file an exit from each first",
            projects=str(enterprise.active_project_count),
        )


def check_review_reason(v: Violations, decision: Decision | None, reason: str) -> None:
    """A rejection says why: the enterprise must know what to correct before it files again."""
    v.check(
        decision is not Decision.REJECT or bool(reason.strip()),
        "reason",
        "is required: a rejection states its reason",
    )


def review(
    enterprise: Enterprise,
    filing: Filing,
    decision: Decision,
    reason: str,
    reviewer: str,
    now: dt.datetime,
) -> tuple[Enterprise, Filing]:
    """Apply a review: the filing is decided and the enterprise moves as ON_REVIEW says."""
    if filing.state is not FilingState.SUBMITTED:
        raise FailedPrecondition(
            "FILING_NOT_PENDING",
            f"filing {filing.filing_id} was already {filing.state.lower()}",
            state=str(filing.state),
        )
    if filing.kind is FilingKind.EXIT and decision is Decision.APPROVE:
        check_exit_allowed(enterprise)
    decided = replace(
        filing,
        state=FilingState.APPROVED if decision is Decision.APPROVE else FilingState.REJECTED,
        rejection_reason=reason if decision is Decision.REJECT else "",
        reviewer=reviewer,
        reviewed_at=now,
    )
    status = ON_REVIEW[(filing.kind, decision)] or enterprise.status
    particulars = enterprise.particulars
    if filing.kind is FilingKind.CHANGE and decision is Decision.APPROVE and filing.proposed:
        particulars = apply_change(particulars, filing.proposed, filing.changed_fields)
    return replace(enterprise, status=status, particulars=particulars, updated_at=now), decided


def apply_change(
    current: Particulars, proposed: Particulars, fields: tuple[str, ...]
) -> Particulars:
    updates: dict[str, str] = {}
    for name in fields:
        if name == "contact_phone":
            updates["contact_phone_masked"] = proposed.contact_phone_masked
            updates["contact_phone_key"] = proposed.contact_phone_key
        else:
            updates[name] = getattr(proposed, name)
    return replace(current, **updates)


def check_reviewer(filing_district: str, reviewer_is_authority: bool) -> None:
    """Only the authority of the enterprise's district or the city reviews its filings (the
    district half is checked with the caller's scope)."""
    if not reviewer_is_authority:
        raise PermissionDenied(
            "NOT_AN_AUTHORITY",
            f"only the housing authority of district {filing_district} or the city may review",
        )


# ---------------------------------------------------------------- projects


@dataclass(frozen=True)
class HandoverItem:
    facility: str
    passed: bool
    finding: str


@dataclass(frozen=True)
class Handover:
    inspection_date: dt.date
    items: tuple[HandoverItem, ...]
    record_reference: str

    @property
    def failed_items(self) -> int:
        return sum(not item.passed for item in self.items)


@dataclass(frozen=True)
class Assignment:
    credit_code: str
    contract_start: dt.date
    contract_end: dt.date
    handover: Handover
    enterprise_name: str = ""


@dataclass(frozen=True)
class Project:
    project_id: str
    name: str
    type: ProjectType
    district_code: str
    sub_district: str
    address: str
    building_area_cm2: int
    created_at: dt.datetime
    updated_at: dt.datetime
    assignment: Assignment | None = None
    unit_count: int = 0
    exclusive_area_cm2: int = 0


def check_contract(v: Violations, start: dt.date | None, end: dt.date | None) -> None:
    if start and end:
        v.check(end > start, "assignment.contract_end", "must be after contract_start")


def check_handover(v: Violations, items: list[HandoverItem], max_items: int) -> None:
    """A handover inspection lists what was inspected, and says what was found wherever an item
    did not pass: that finding is what the new enterprise is held to."""
    at = "assignment.handover.items"
    v.check(
        0 < len(items) <= max_items,
        at,
        f"list the inspected common parts and facilities (1 to {max_items})",
    )
    for i, item in enumerate(items):
        v.check(
            item.passed or bool(item.finding.strip()),
            f"{at}[{i}].finding",
            "is required: an item that did not pass states what was found",
        )


def check_may_employ(enterprise: Enterprise) -> None:
    """Practitioners are registered with filed enterprises only."""
    if enterprise.status is not EnterpriseStatus.FILED:
        raise FailedPrecondition(
            "ENTERPRISE_NOT_FILED",
            f"{enterprise.credit_code} has no approved filing",
            credit_code=enterprise.credit_code,
        )


def check_assignable(project: Project, enterprise: Enterprise | None, credit_code: str) -> None:
    if enterprise is None or enterprise.status is not EnterpriseStatus.FILED:
        raise FailedPrecondition(
            "ENTERPRISE_NOT_FILED",
            f"{credit_code} has no approved filing: only filed enterprises may serve projects",
            credit_code=credit_code,
        )
    if project.assignment is not None:
        raise FailedPrecondition(
            "PROJECT_ALREADY_SERVED",
            f"project {project.project_id} is served by {project.assignment.credit_code}; "
            "that enterprise must exit first",
            credit_code=project.assignment.credit_code,
        )


def check_exit(project: Project, credit_code: str, filed: bool, caller_is_authority: bool) -> None:
    if project.assignment is None or project.assignment.credit_code != credit_code:
        raise FailedPrecondition(
            "ENTERPRISE_NOT_SERVING",
            f"{credit_code} does not serve project {project.project_id}",
            credit_code=credit_code,
        )
    if not filed and not caller_is_authority:
        raise PermissionDenied(
            "NOT_AN_AUTHORITY", "only an authority records an exit the enterprise did not file"
        )


# ---------------------------------------------------------------- units and owners


@dataclass(frozen=True)
class Owner:
    kind: OwnerKind
    name: str
    id_masked: str
    owner_key: str
    phone_masked: str


@dataclass(frozen=True)
class Unit:
    unit_id: str
    project_id: str
    number: str
    exclusive_area_cm2: int
    owner: Owner


@dataclass(frozen=True)
class OwnedUnit:
    """A unit as its owner sees it at sign-in: with its project's name and district."""

    unit: Unit
    project_name: str
    district_code: str


# ---------------------------------------------------------------- owners' sign-in (development)


@dataclass(frozen=True)
class SignInCode:
    """A one-time code pending for an owner key: its keyed hash, expiry and attempts left."""

    digest: str
    expires: dt.datetime
    attempts_left: int


def redeem_sign_in_code(
    pending: SignInCode | None, digest: str, now: dt.datetime
) -> SignInCode | None:
    """What remains pending after a code whose keyed hash is `digest` is offered: None once the
    right code is redeemed (and returns). A wrong code costs an attempt; an expired, spent or
    never-issued one is refused (raises), so that a code is guessed at most a few times."""
    if pending is None:
        raise FailedPrecondition(
            "SIGN_IN_NOT_STARTED", "no code is pending for this ID number: ask for a new one"
        )
    if now >= pending.expires:
        raise FailedPrecondition("SIGN_IN_CODE_EXPIRED", "the code has expired: ask for a new one")
    if hmac.compare_digest(pending.digest, digest):
        return None
    if pending.attempts_left <= 1:
        raise FailedPrecondition(
            "SIGN_IN_ATTEMPTS_EXHAUSTED", "the code was mistyped too often: ask for a new one"
        )
    return replace(pending, attempts_left=pending.attempts_left - 1)


# ---------------------------------------------------------------- disclosure


@dataclass(frozen=True)
class Disclosure:
    project_id: str
    service_items: tuple[str, ...]
    service_grade: str
    service_standard: str
    fee_method: FeeMethod | None
    fee_fen_per_m2_month: int
    service_phone: str
    complaint_phones: tuple[str, ...]
    updated_at: dt.datetime | None = None


def empty_disclosure(project_id: str) -> Disclosure:
    return Disclosure(project_id, (), "", "", None, 0, "", ())


def revise_disclosure(
    current: Disclosure | None,
    given: Disclosure,
    fields: tuple[str, ...],
    now: dt.datetime,
) -> Disclosure:
    """The disclosure with the named fields as given and the others as they were."""
    base = current or empty_disclosure(given.project_id)
    return replace(base, **{f: getattr(given, f) for f in fields}, updated_at=now)


def check_may_disclose(serving: str, caller_is_authority: bool, caller_enterprise: str) -> None:
    """The enterprise that serves the project discloses for it; an authority may correct it."""
    if not caller_is_authority and not (serving and caller_enterprise == serving):
        raise PermissionDenied(
            "NOT_SERVING_ENTERPRISE",
            "only the serving enterprise or an authority updates the disclosure",
        )


def check_fee(v: Violations, field_name: str, fen_per_m2_month: int, max_fen: int) -> None:
    v.check(
        0 <= fen_per_m2_month <= max_fen,
        field_name,
        f"must be between 0 and {max_fen} fen per m² per month",
    )


DISCLOSURE_FIELDS = (
    "service_items",
    "service_grade",
    "service_standard",
    "fee_method",
    "fee_fen_per_m2_month",
    "service_phone",
    "complaint_phones",
)


# ---------------------------------------------------------------- practitioners


@dataclass(frozen=True)
class Practitioner:
    practitioner_id: str
    credit_code: str
    district_code: str
    name: str
    id_masked: str
    person_key: str
    position: str
    certificate_number: str
    created_at: dt.datetime


# ---------------------------------------------------------------- owners' committees


@dataclass(frozen=True)
class CommitteeMember:
    name: str
    role: CommitteeRole
    affiliation: str
    phone_masked: str


@dataclass(frozen=True)
class Committee:
    committee_id: str
    project_id: str
    kind: CommitteeKind
    members: tuple[CommitteeMember, ...]
    term_start: dt.date
    term_end: dt.date
    created_at: dt.datetime
    ended_at: dt.datetime | None = None


@dataclass(frozen=True)
class CommitteeRules:
    min_members: int
    max_members: int
    odd_members: bool
    max_term_years: int


def check_committee_shape(
    kind: CommitteeKind,
    roles: list[CommitteeRole],
    term_start: dt.date,
    term_end: dt.date,
    rules: CommitteeRules,
    v: Violations,
) -> None:
    count = len(roles)
    if not v.check(
        rules.min_members <= count <= rules.max_members,
        "committee.members",
        f"a {kind.lower()} committee has {rules.min_members} to {rules.max_members} members, "
        f"got {count}",
    ):
        return
    if rules.odd_members:
        v.check(count % 2 == 1, "committee.members", f"needs an odd number of members, got {count}")
    v.check(
        roles.count(CommitteeRole.DIRECTOR) == 1,
        "committee.members",
        "exactly one member must be the director",
    )
    if v.check(term_end > term_start, "committee.term_end", "must be after term_start"):
        limit = add_years(term_start, rules.max_term_years)
        v.check(
            term_end <= limit,
            "committee.term_end",
            f"a term lasts at most {rules.max_term_years} year(s), until {limit.isoformat()}",
        )


def check_may_form(kind: CommitteeKind, acting: Committee | None, term_start: dt.date) -> None:
    """Terms do not overlap, with one exception: an elected owners' committee takes over from
    a transitional committee at once. A transitional committee may act again once an owners'
    committee's term has run out without a new election."""
    if acting is None or term_start >= acting.term_end:
        return
    if kind is CommitteeKind.OWNERS and acting.kind is CommitteeKind.TRANSITIONAL:
        return
    reason = (
        "OWNERS_COMMITTEE_EXISTS"
        if kind is CommitteeKind.TRANSITIONAL and acting.kind is CommitteeKind.OWNERS
        else "COMMITTEE_TERM_OVERLAPS"
    )
    raise FailedPrecondition(
        reason,
        f"the acting {acting.kind.lower()} committee of project {acting.project_id} serves "
        f"until {acting.term_end.isoformat()}",
        committee_id=acting.committee_id,
    )


def add_years(day: dt.date, years: int) -> dt.date:
    if day.year + years > dt.MAXYEAR:
        return dt.date.max
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


# ---------------------------------------------------------------- field checks

# re.ASCII: \d would otherwise admit every script's digits (٨, ８), which Decimal then reads.
_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}", re.ASCII)
_HOTLINE = re.compile(r"(1\d{4}|[48]00-?\d{3}-?\d{4})", re.ASCII)  # 12345, 400-xxx-xxxx
_UNIT_NUMBER = re.compile(r"[0-9A-Za-z\u4e00-\u9fff][0-9A-Za-z\u4e00-\u9fff\-#/]{0,39}")
_AREA = re.compile(r"\d{1,9}(\.\d{1,2})?", re.ASCII)
CM2_PER_M2 = 10_000


def is_personal_phone(phone: str) -> bool:
    return bool(_MOBILE.fullmatch(phone) or _LANDLINE.fullmatch(phone))


def is_public_phone(phone: str) -> bool:
    return is_personal_phone(phone) or bool(_HOTLINE.fullmatch(phone))


def check_credit_code(v: Violations, field_name: str, code: str) -> None:
    problem = credit_code_problem(code) if code else "is required"
    if problem:
        v.add(
            field_name, f"is not a valid unified social credit code: {problem}" if code else problem
        )


def check_resident_id(v: Violations, field_name: str, number: str, today: dt.date) -> None:
    problem = resident_id_problem(number, today) if number else "is required"
    if problem:
        v.add(field_name, f"is not a valid resident ID number: {problem}" if number else problem)


def check_district(v: Violations, field_name: str, code: str, city: dict[str, str]) -> None:
    if not code:
        v.add(field_name, "is required")
    elif code not in city:
        v.add(
            field_name, f"{code[:10]!r} is not a district of the city ({', '.join(sorted(city))})"
        )


def check_phone(v: Violations, field_name: str, phone: str, *, public: bool = False) -> None:
    ok = is_public_phone(phone) if public else is_personal_phone(phone)
    if not ok:
        v.add(field_name, "is not a phone number (mobile 1xxxxxxxxxx or landline 0xxx-xxxxxxx)")


def check_unit_number(v: Violations, field_name: str, number: str) -> None:
    if not _UNIT_NUMBER.fullmatch(number):
        v.add(field_name, "must be like 3-2-1201: letters, digits, '-', '#', '/', at most 40")


def parse_area_cm2(v: Violations, field_name: str, text: str) -> int:
    """A decimal area in m² with at most two decimals, as exact integer cm²."""
    if not _AREA.fullmatch(text):
        v.add(field_name, "must be a decimal number of square metres with at most 2 decimals")
        return 0
    try:
        cm2 = int(Decimal(text) * CM2_PER_M2)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        v.add(field_name, "is not a number")
        return 0
    if cm2 <= 0:
        v.add(field_name, "must be greater than zero")
    return cm2


def format_area(cm2: int) -> str:
    return f"{Decimal(cm2) / CM2_PER_M2:.2f}"
