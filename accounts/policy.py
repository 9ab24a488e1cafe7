"""The one access-check seam: `can(user, action, obj, **context) -> Decision`.

Every view, consumer and API endpoint asks this module before it reads or changes anything.
Roles grant actions (RBAC); the object's organisation must be one where the user holds such a
role. Later rules (IP allowlists, time windows, classification labels, purpose) add to
`_RULES` and keep the same signature, so callers never change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accounts.models import Role


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
    Role.PATIENT: frozenset({Action.STUDY_VIEW}),
    Role.STAFF: frozenset({Action.STUDY_VIEW, Action.STUDY_IMPORT, Action.SHARE_MANAGE}),
    Role.AUDITOR: frozenset({Action.AUDIT_VIEW}),
    Role.ADMIN: frozenset({Action.ORG_MANAGE}),
}

KNOWN_ACTIONS = frozenset().union(*ROLE_ACTIONS.values()) | {Action.KEYS_ROTATE}


def organization_id_of(obj: Any) -> int | None:
    """Return the id of the organisation an object belongs to (an Organization is its own)."""
    if obj is None:
        return None
    if obj.__class__.__name__ == "Organization":
        return obj.pk
    return getattr(obj, "organization_id", None)


def _memberships(user) -> list:
    cache = getattr(user, "_lightbox_memberships", None)
    if cache is None:
        cache = list(user.memberships.all())
        user._lightbox_memberships = cache
    return cache


def _rule_authenticated(user, action, obj, context) -> Decision | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return Decision(False, "not signed in")
    if not user.is_active:
        return Decision(False, "account disabled")
    return None


def _rule_known_action(user, action, obj, context) -> Decision | None:
    if action not in KNOWN_ACTIONS:
        # SECURITY: a typo in a caller must deny, never fall through to an allow.
        return Decision(False, f"unknown action {action}")
    return None


_RULES: list[Callable[..., Decision | None]] = [_rule_authenticated, _rule_known_action]


def can(user, action: str, obj: Any = None, **context: Any) -> Decision:
    """Decide whether `user` may perform `action` on `obj` (or anywhere, when obj is None)."""
    for rule in _RULES:
        decision = rule(user, action, obj, context)
        if decision is not None:
            return decision
    org_id = organization_id_of(obj)
    memberships = _memberships(user)
    if action == Action.KEYS_ROTATE:
        ok = any(m.is_key_custodian and (org_id is None or m.organization_id == org_id) for m in memberships)
        return Decision(ok, "key custodian" if ok else "not a key custodian")
    for membership in memberships:
        if org_id is not None and membership.organization_id != org_id:
            continue
        if action in ROLE_ACTIONS.get(membership.role, ()):
            return Decision(True, f"role {membership.role}")
    if org_id is not None and not any(m.organization_id == org_id for m in memberships):
        return Decision(False, "other organisation")
    return Decision(False, "role does not allow this")


def organizations_where(user, action: str) -> list[int]:
    """Return the ids of organisations in which `user` may perform `action`."""
    if not can(user, action).allowed:
        return []
    return sorted(
        {m.organization_id for m in _memberships(user) if action in ROLE_ACTIONS.get(m.role, ())}
    )
