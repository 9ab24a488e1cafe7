"""What one organisation's identity provider may see and change.

The user model has no organisation column, so the SCIM id we hand out carries it: a user created
(or adopted) by organisation 7's client gets `scim_id = "7-<random hex>"`, and only organisation
7's clients ever match that prefix. `scim_id` is read-only over SCIM and not editable in the admin,
so a client cannot move a user between organisations.

A user with no SCIM id yet is *adoptable* by an organisation when all of its memberships are in
that organisation and it is not a superuser: an identity provider that starts provisioning an
existing organisation finds (`userName eq "..."`) and links the accounts already there. A user
with memberships in two organisations belongs to neither identity provider.

A user deleted over SCIM keeps its row (the audit trail refers to it) but its id becomes a
tombstone, `deleted-7-<hex>`, which no organisation's prefix matches: it answers 404 from then on,
as RFC 7644 section 3.6 requires.
"""

from __future__ import annotations

import secrets

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from accounts.models import Membership, Organization, ScimGroup, User


def _org_id(organization) -> int:
    return getattr(organization, "pk", organization)


def user_scim_id(organization) -> str:
    """A new SCIM id for a user provisioned by `organization`."""
    return f"{_org_id(organization)}-{secrets.token_hex(16)}"


def tombstone_scim_id(organization) -> str:
    """The id a user deleted over SCIM by `organization` keeps (matched by no organisation)."""
    return f"deleted-{_org_id(organization)}-{secrets.token_hex(16)}"


def is_tombstone_of(user: User, organization) -> bool:
    return (user.scim_id or "").startswith(f"deleted-{_org_id(organization)}-")


def users_in_scope(organization: Organization) -> QuerySet[User]:
    """Every user `organization`'s identity provider may see: provisioned by it, or adoptable."""
    org_id = _org_id(organization)
    mine = Membership.objects.filter(user=OuterRef("pk"), organization_id=org_id)
    elsewhere = Membership.objects.filter(user=OuterRef("pk")).exclude(organization_id=org_id)
    # SECURITY: the prefix ends in "-", so organisation 1 never matches organisation 12's users.
    provisioned = Q(scim_id__startswith=f"{org_id}-")
    adoptable = Q(scim_id__isnull=True, is_superuser=False) & Exists(mine) & ~Exists(elsewhere)
    return User.objects.filter(provisioned | adoptable)


def users_for_listing(organization: Organization) -> QuerySet[User]:
    """`users_in_scope`, ordered for paging, with each user's groups here fetched in one query."""
    groups = ScimGroup.objects.filter(organization_id=_org_id(organization)).order_by("pk")
    return (
        users_in_scope(organization)
        .prefetch_related(Prefetch("scim_groups", queryset=groups, to_attr="scim_groups_here"))
        .order_by("pk")
    )


def groups_in_scope(organization: Organization) -> QuerySet[ScimGroup]:
    return ScimGroup.objects.filter(organization_id=_org_id(organization))


def adopt(user: User, organization: Organization) -> bool:
    """Give an adoptable user its SCIM id; True when this call did (a concurrent one may have won)."""
    if user.scim_id is not None:
        return False
    won = User.objects.filter(pk=user.pk, scim_id__isnull=True).update(scim_id=user_scim_id(organization))
    user.scim_id = User.objects.values_list("scim_id", flat=True).get(pk=user.pk)
    return bool(won)
