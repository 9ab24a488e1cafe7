"""Demo organisation and one demo user per role, for `manage.py demo` (development only)."""

from __future__ import annotations

import os
import secrets
from base64 import b32encode
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Organization, Role, User

DEMO_ORG_SLUG = "demo-hospital"
DEMO_ORG_NAME = "Lightbox Demo Hospital"
DEMO_ROLES = [Role.CLINICIAN, Role.PATIENT, Role.STAFF, Role.AUDITOR, Role.ADMIN]
ADMIN_GROUP = "Lightbox administrators"
# Administrators manage people and organisations in the admin site, nothing clinical.
ADMIN_PERMISSIONS = [
    f"{verb}_{model}" for model in ("user", "organization", "membership") for verb in ("add", "change", "view")
]


def demo_email(role: str) -> str:
    return f"{role}@lightbox.test"


@dataclass(frozen=True)
class DemoCredential:
    email: str
    role: str
    password: str | None  # None when the user already existed and kept its password
    totp_secret: str | None = None  # base32, for an authenticator app (new users only)
    otpauth_uri: str | None = None


def _admin_group() -> Group:
    group, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
    group.permissions.set(Permission.objects.filter(codename__in=ADMIN_PERMISSIONS))
    return group


@transaction.atomic
def ensure_demo_users() -> tuple[Organization, list[DemoCredential]]:
    """Create the demo organisation and users that are missing, each new user with a confirmed TOTP
    device; return the new passwords and TOTP secrets once."""
    org, _ = Organization.objects.get_or_create(slug=DEMO_ORG_SLUG, defaults={"name": DEMO_ORG_NAME})
    credentials = []
    for role in DEMO_ROLES:
        email = demo_email(role)
        user = User.objects.filter(email=email).first()
        password = None
        device = None
        if user is None:
            # SECURITY: random per install, never a password written in the code.
            password = "-".join(secrets.token_urlsafe(4) for _ in range(4))
            user = User.objects.create_user(
                email=email,
                password=password,
                full_name=f"Demo {role.label}",
                is_staff=role in (Role.STAFF, Role.AUDITOR, Role.ADMIN),
            )
            if role == Role.ADMIN:
                user.groups.add(_admin_group())
            # Every account signs in with a second factor; the demo prints the secret to add.
            device = TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
        Membership.objects.get_or_create(
            user=user, organization=org, role=role, defaults={"is_key_custodian": role == Role.ADMIN}
        )
        credentials.append(
            DemoCredential(
                email=email,
                role=str(role),
                password=password,
                totp_secret=b32encode(device.bin_key).decode() if device else None,
                otpauth_uri=device.config_url if device else None,
            )
        )
    return org, credentials


def save_credentials(path: Path, credentials: list[DemoCredential]) -> None:
    """Remember new demo passwords and TOTP secrets in a 0600 file so `make run` can show them again.

    One line per user: role, e-mail, password, base32 TOTP secret, otpauth:// URI.
    """
    new = [c for c in credentials if c.password]
    if not new:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        for c in new:
            handle.write(f"{c.role:<10} {c.email:<26} {c.password:<28} {c.totp_secret or '-'}  {c.otpauth_uri or '-'}\n")
