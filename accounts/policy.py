"""The one access-check seam: `can(user, action, obj, **context) -> Decision`.

Every view, consumer and API endpoint asks this module before it reads or changes anything.

A request is allowed when one of the user's memberships
1. is in the object's organisation (RBAC: the role grants the action),
2. passes that organisation's access rules for the role (ABAC: client network, time of day), and
3. for a study (or a series/instance of one): the study is the member's own when the role is
   `patient`, and a `restricted` study carries an explicit, current grant for this user.
A `purpose` in the context narrows further (research never reads identified images here).

Querysets ("every study this user may see") come from `visibility()`, which applies rules 1-2;
`archive.access` turns it into one filter that also applies rule 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from accounts.access_rules import rule_blocks
from accounts.models import AccessRule, Role
from config.client_ip import current_client_ip


@dataclass(frozen=True)
class Decision:
    """The answer to "is this allowed?", with the reason kept for the audit trail."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


class Action:
    STUDY_VIEW = "study.view"
    STUDY_IMPORT = "study.import"
    STUDY_EXPORT = "study.export"
    SHARE_MANAGE = "share.manage"
    AUDIT_VIEW = "audit.view"
    ORG_MANAGE = "org.manage"
    KEYS_ROTATE = "keys.rotate"


# Which role may do what. Separation of duties: an auditor reads the trail but sees no images;
# an admin manages users and policy but gains no clinical access by being admin.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.CLINICIAN: frozenset({Action.STUDY_VIEW, Action.STUDY_EXPORT, Action.SHARE_MANAGE}),
    Role.PATIENT: frozenset({Action.STUDY_VIEW, Action.SHARE_MANAGE}),
    Role.STAFF: frozenset({Action.STUDY_VIEW, Action.STUDY_IMPORT, Action.SHARE_MANAGE}),
    Role.AUDITOR: frozenset({Action.AUDIT_VIEW}),
    Role.ADMIN: frozenset({Action.ORG_MANAGE}),
}

KNOWN_ACTIONS = frozenset().union(*ROLE_ACTIONS.values()) | {Action.KEYS_ROTATE}
# Actions on clinical content: they obey the patient-link and restricted-study rules.
STUDY_ACTIONS = frozenset({Action.STUDY_VIEW, Action.STUDY_EXPORT, Action.SHARE_MANAGE})
# HIPAA purposes of use we recognise. Research gets de-identified data only (privacy issue), so
# no action here is allowed for it.
PURPOSES = {"treatment", "payment", "operations", "research"}
PURPOSES_FOR_IDENTIFIED_DATA = {"treatment", "payment", "operations"}


def organization_id_of(obj: Any) -> int | None:
    """Return the id of the organisation an object belongs to (an Organization is its own)."""
    if obj is None:
        return None
    if obj.__class__.__name__ == "Organization":
        return obj.pk
    return getattr(obj, "organization_id", None)


def _study_of(obj: Any):
    name = obj.__class__.__name__ if obj is not None else ""
    if name == "Study":
        return obj
    if name == "Series":
        return obj.study
    if name == "Instance":
        return obj.series.study
    return None


def _memberships(user) -> list:
    cache = getattr(user, "_lightbox_memberships", None)
    if cache is None:
        cache = list(user.memberships.select_related("organization"))
        user._lightbox_memberships = cache
    return cache


def _access_rules(user) -> dict[int, list[AccessRule]]:
    """The access rules of every organisation the user belongs to (one query per user object)."""
    cache = getattr(user, "_lightbox_access_rules", None)
    if cache is None:
        org_ids = {m.organization_id for m in _memberships(user)}
        cache = {}
        for rule in AccessRule.objects.filter(organization_id__in=org_ids):
            cache.setdefault(rule.organization_id, []).append(rule)
        user._lightbox_access_rules = cache
    return cache


@dataclass
class _Context:
    ip: str | None
    now: datetime | None
    purpose: str | None
    extra: dict = field(default_factory=dict)


def _context(context: dict) -> _Context:
    return _Context(
        ip=context.get("ip", current_client_ip()),
        now=context.get("now"),
        purpose=context.get("purpose"),
        extra=context,
    )


def _membership_blocked(user, membership, ctx: _Context) -> str | None:
    rules = _access_rules(user).get(membership.organization_id, ())
    return rule_blocks(rules, membership, ip=ctx.ip, now=ctx.now)


def _rule_authenticated(user, action, obj, ctx) -> Decision | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return Decision(False, "not signed in")
    if not user.is_active:
        return Decision(False, "account disabled")
    return None


def _rule_known_action(user, action, obj, ctx) -> Decision | None:
    if action not in KNOWN_ACTIONS:
        # SECURITY: a typo in a caller must deny, never fall through to an allow.
        return Decision(False, f"unknown action {action}")
    return None


def _rule_purpose(user, action, obj, ctx) -> Decision | None:
    if ctx.purpose is None or action not in STUDY_ACTIONS:
        return None
    if ctx.purpose not in PURPOSES:
        return Decision(False, f"unknown purpose {str(ctx.purpose)[:30]}")
    if ctx.purpose not in PURPOSES_FOR_IDENTIFIED_DATA:
        return Decision(False, f"purpose {ctx.purpose} gets de-identified data only")
    return None


_RULES: list[Callable[..., Decision | None]] = [_rule_authenticated, _rule_known_action, _rule_purpose]


def _study_blocked(user, membership, study) -> str | None:
    from archive.models import Classification, PatientLink

    if membership.role == Role.PATIENT and not PatientLink.objects.filter(user=user, patient_id=study.patient_id).exists():
        return "not the patient's own study"
    if study.classification == Classification.RESTRICTED and not has_current_grant(user, study):
        return "restricted study without a grant"
    return None


def has_current_grant(user, study) -> bool:
    from archive.models import StudyGrant

    return StudyGrant.objects.current().filter(user=user, study=study).exists()


def can(user, action: str, obj: Any = None, **context: Any) -> Decision:
    """Decide whether `user` may perform `action` on `obj` (or anywhere, when obj is None).

    Context: `ip` (default: the current request's client address), `now` (default: the clock),
    `purpose` (treatment / payment / operations / research).
    """
    ctx = _context(context)
    for rule in _RULES:
        decision = rule(user, action, obj, ctx)
        if decision is not None:
            return decision
    org_id = organization_id_of(obj)
    memberships = [m for m in _memberships(user) if org_id is None or m.organization_id == org_id]
    if org_id is not None and not memberships:
        return Decision(False, "other organisation")
    if action == Action.KEYS_ROTATE:
        custodians = [m for m in memberships if m.is_key_custodian]
        if not custodians:
            return Decision(False, "not a key custodian")
        blocked = [_membership_blocked(user, m, ctx) for m in custodians]
        ok = any(reason is None for reason in blocked)
        return Decision(ok, "key custodian" if ok else blocked[0])
    study = _study_of(obj) if action in STUDY_ACTIONS else None
    refusal = "role does not allow this"
    for membership in memberships:
        if action not in ROLE_ACTIONS.get(membership.role, ()):
            continue
        reason = _membership_blocked(user, membership, ctx)
        if reason is None and study is not None:
            reason = _study_blocked(user, membership, study)
        if reason is None:
            return Decision(True, f"role {membership.role}")
        refusal = reason
    return Decision(False, refusal)


@dataclass(frozen=True)
class Visibility:
    """Where a user may perform an action: whole organisations, and organisations where they may
    only reach their own patient record (role `patient`)."""

    full_org_ids: frozenset[int]
    own_patient_org_ids: frozenset[int]

    @property
    def org_ids(self) -> list[int]:
        return sorted(self.full_org_ids | self.own_patient_org_ids)


def visibility(user, action: str, **context: Any) -> Visibility:
    """Apply RBAC and the access rules to every membership; see archive.access for querysets."""
    if not can(user, action, **context).allowed:
        return Visibility(frozenset(), frozenset())
    ctx = _context(context)
    full, own = set(), set()
    for m in _memberships(user):
        if action not in ROLE_ACTIONS.get(m.role, ()) or _membership_blocked(user, m, ctx) is not None:
            continue
        (own if m.role == Role.PATIENT and action in STUDY_ACTIONS else full).add(m.organization_id)
    return Visibility(frozenset(full), frozenset(own - full))


def organizations_where(user, action: str, **context: Any) -> list[int]:
    """Return the ids of organisations in which `user` may perform `action` (in some part)."""
    return visibility(user, action, **context).org_ids
