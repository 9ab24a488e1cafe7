"""Plain factory functions with keyword defaults."""

from __future__ import annotations

import itertools
import time

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


def sign_in(client, user, *, method: str = "totp"):
    """Sign `user` in on a Django test client with a verified second factor (as after OTP)."""
    from accounts.mfa import SESSION_METHOD, SESSION_VERIFIED_AT

    client.force_login(user)
    session = client.session
    session[SESSION_METHOD] = method
    session[SESSION_VERIFIED_AT] = time.time()
    session.save()
    return client


def session_key_for(user, *, verified: bool = True) -> str:
    """A real session key for `user` (second factor passed unless verified=False).

    For clients that are not Django's test client: Channels communicators (as a cookie header)
    and Playwright browser contexts (`context.add_cookies`).
    """
    from django.conf import settings
    from django.test import Client

    client = Client()
    if verified:
        sign_in(client, user)
    else:
        client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def session_cookie_header(user, *, verified: bool = True) -> str:
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={session_key_for(user, verified=verified)}"
