"""The write side of SCIM provisioning: every change here is one transaction and one audit event.

Audit events name the SCIM client (`details["scim_client"]`), never a token, a name or an e-mail
address; the actor is None (an identity provider is not a user).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scim import exceptions

from accounts.models import ApiToken, Membership, Organization, ScimClient, ScimGroup, User
from accounts.scim import scope
from audit.models import ActorType
from audit.services import record

UNSET: Any = object()


@dataclass
class UserChanges:
    """Attributes a SCIM request sets; UNSET leaves the current value alone."""

    email: Any = UNSET
    full_name: Any = UNSET
    external_id: Any = UNSET
    active: Any = UNSET

    def items(self) -> Iterable[tuple[str, Any]]:
        for name in ("email", "full_name", "external_id", "active"):
            value = getattr(self, name)
            if value is not UNSET:
                yield name, value


@dataclass
class GroupChanges:
    display_name: Any = UNSET
    role: Any = UNSET
    external_id: Any = UNSET
    members: Any = UNSET  # a full replacement: list[User]
    add: list[User] = field(default_factory=list)
    remove: list[User] = field(default_factory=list)


def _audit(action: str, *, client: ScimClient, request, object_type: str, object_id, **details) -> None:
    record(action=action, actor=None, actor_type=ActorType.SYSTEM, request=request,
           organization=client.organization_id, object_type=object_type, object_id=object_id,
           details={"scim_client": client.pk, **details})


def audit_link(*, client: ScimClient, request, user: User) -> None:
    """Record that an existing user was linked to the identity provider (given a SCIM id)."""
    _audit("scim.user_linked", client=client, request=request, object_type="user", object_id=user.pk)


def _email_taken(email: str, *, exclude_pk: int | None = None) -> bool:
    return User.objects.filter(email=email).exclude(pk=exclude_pk).exists()


def create_user(*, client: ScimClient, request, changes: UserChanges) -> User:
    """Provision a user for the client's organisation (or revive one this organisation deleted)."""
    org = client.organization
    with transaction.atomic():
        existing = User.objects.select_for_update().filter(email=changes.email).first()
        if existing is not None and not scope.is_tombstone_of(existing, org):
            # RFC 7644 section 3.3: 409 with scimType "uniqueness".
            raise exceptions.IntegrityError("A user with this userName already exists.", scim_type="uniqueness")
        user = existing or User(email=changes.email)
        user.full_name = "" if changes.full_name is UNSET else changes.full_name
        user.scim_external_id = None if changes.external_id is UNSET else changes.external_id
        user.is_active = True if changes.active is UNSET else changes.active
        user.scim_id = scope.user_scim_id(org)
        if existing is None:
            # Provisioned users sign in through single sign-on or a password reset, never with a
            # password chosen by the identity provider.
            user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            raise exceptions.IntegrityError("A user with this userName already exists.", scim_type="uniqueness") from None
        _audit("scim.user_created", client=client, request=request, object_type="user", object_id=user.pk,
               active=user.is_active, revived=existing is not None)
    return user


def update_user(*, client: ScimClient, request, user: User, changes: UserChanges) -> User:
    """Apply PUT/PATCH changes; turning `active` off deactivates (sessions ended, tokens revoked)."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        was_active = user.is_active
        changed: list[str] = []
        for name, value in changes.items():
            attribute = {"external_id": "scim_external_id", "active": "is_active"}.get(name, name)
            if getattr(user, attribute) != value:
                setattr(user, attribute, value)
                changed.append(name)
        if "email" in changed and _email_taken(user.email, exclude_pk=user.pk):
            raise exceptions.IntegrityError("A user with this userName already exists.", scim_type="uniqueness")
        if not changed:
            return user
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:  # the same address taken by a concurrent request
            raise exceptions.IntegrityError("A user with this userName already exists.", scim_type="uniqueness") from None
        if was_active and not user.is_active:
            _deactivate(user=user, client=client, request=request, via="active_false",
                        other_fields=[name for name in changed if name != "active"])
        else:
            _audit("scim.user_updated", client=client, request=request, object_type="user", object_id=user.pk,
                   fields=changed, reactivated=not was_active and user.is_active)
    return user


def delete_user(*, client: ScimClient, request, user: User) -> None:
    """SCIM DELETE: deactivate, leave this organisation's groups, keep the row for the audit trail."""
    org = client.organization
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        groups = list(scope.groups_in_scope(org).filter(members=user))
        for group in groups:
            group.members.remove(user)
        removed = _sync_memberships(org, [user], {g.role for g in groups})
        user.is_active = False
        user.scim_id = scope.tombstone_scim_id(org)
        user.save(update_fields=["is_active", "scim_id"])
        _deactivate(user=user, client=client, request=request, via="delete",
                    groups_left=[g.pk for g in groups], memberships_removed=removed)


def _deactivate(*, user: User, client: ScimClient, request, via: str, **details) -> None:
    from accounts.sessions import end_all_sessions
    from accounts.signals import forget_access_decisions

    # SECURITY: both at once, in this transaction: every browser session ends (its open websockets
    # are closed after commit) and every API token is revoked, so nothing the user held still works.
    revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    forget_access_decisions()  # a queryset update sends no signal
    sessions = end_all_sessions(user, reason="scim_deactivated", request=request)
    _audit("scim.user_deactivated", client=client, request=request, object_type="user", object_id=user.pk,
           via=via, api_tokens_revoked=revoked, sessions_ended=sessions, **details)


def _sync_memberships(org: Organization, users: Iterable[User], roles: Iterable[str]) -> list[dict]:
    """Make each user hold each role in `org` exactly when one of org's SCIM groups grants it."""
    changes = []
    roles = set(roles)
    for user in users:
        granted = set(
            ScimGroup.objects.filter(organization=org, members=user, role__in=roles).values_list("role", flat=True)
        )
        for role in roles:
            if role in granted:
                _, created = Membership.objects.get_or_create(user=user, organization=org, role=role)
                if created:
                    changes.append({"user": user.pk, "role": role, "change": "added"})
            elif Membership.objects.filter(user=user, organization=org, role=role).delete()[0]:
                changes.append({"user": user.pk, "role": role, "change": "removed"})
    return changes


def create_group(*, client: ScimClient, request, changes: GroupChanges) -> ScimGroup:
    org = client.organization
    with transaction.atomic():
        group = ScimGroup.objects.create(
            organization=org,
            display_name=changes.display_name,
            role=changes.role,
            scim_id=secrets.token_hex(16),
            scim_external_id=None if changes.external_id is UNSET else changes.external_id,
        )
        members = [] if changes.members is UNSET else changes.members
        group.members.set(members)
        memberships = _sync_memberships(org, members, {group.role})
        _audit("scim.group_created", client=client, request=request, object_type="scim_group", object_id=group.pk,
               role=group.role, members=[u.pk for u in members], memberships=memberships)
    return group


def update_group(*, client: ScimClient, request, group: ScimGroup, changes: GroupChanges) -> ScimGroup:
    """Apply PUT/PATCH changes to a group and to the memberships its role grants."""
    org = client.organization
    with transaction.atomic():
        group = ScimGroup.objects.select_for_update().get(pk=group.pk)
        before = set(group.members.all())
        old_role = group.role
        fields = []
        if changes.display_name is not UNSET and changes.display_name != group.display_name:
            group.display_name = changes.display_name
            fields.append("display_name")
        if changes.role is not UNSET and changes.role != group.role:
            group.role = changes.role
            fields.append("role")
        if changes.external_id is not UNSET and changes.external_id != group.scim_external_id:
            group.scim_external_id = changes.external_id
            fields.append("external_id")
        group.save()
        after = set(before if changes.members is UNSET else changes.members)
        after |= set(changes.add)
        after -= set(changes.remove)
        added, removed = after - before, before - after
        group.members.add(*added)
        group.members.remove(*removed)
        affected = (after | before) if old_role != group.role else (added | removed)
        memberships = _sync_memberships(org, affected, {old_role, group.role})
        if fields or added or removed:
            _audit("scim.group_updated", client=client, request=request, object_type="scim_group",
                   object_id=group.pk, fields=fields, role=group.role, previous_role=old_role,
                   added=sorted(u.pk for u in added), removed=sorted(u.pk for u in removed), memberships=memberships)
    return group


def delete_group(*, client: ScimClient, request, group: ScimGroup) -> None:
    org = client.organization
    with transaction.atomic():
        group = ScimGroup.objects.select_for_update().get(pk=group.pk)
        members = list(group.members.all())
        role, pk = group.role, group.pk
        group.delete()
        memberships = _sync_memberships(org, members, {role})
        _audit("scim.group_deleted", client=client, request=request, object_type="scim_group", object_id=pk,
               role=role, members=[u.pk for u in members], memberships=memberships)
