"""Plain factory functions with keyword defaults."""

from __future__ import annotations

import itertools

from accounts.models import Membership, Organization, Role, User

_counter = itertools.count(1)
PASSWORD = "correct horse battery staple"


def make_organization(*, name: str | None = None, slug: str | None = None) -> Organization:
    n = next(_counter)
    return Organization.objects.create(name=name or f"Hospital {n}", slug=slug or f"hospital-{n}")


def make_user(
    *,
    email: str | None = None,
    password: str = PASSWORD,
    organization: Organization | None = None,
    role: str | None = Role.CLINICIAN,
    is_staff: bool = False,
    is_key_custodian: bool = False,
) -> User:
    n = next(_counter)
    user = User.objects.create_user(email=email or f"user{n}@example.org", password=password, is_staff=is_staff)
    if organization is not None and role is not None:
        Membership.objects.create(user=user, organization=organization, role=role, is_key_custodian=is_key_custodian)
    return user
