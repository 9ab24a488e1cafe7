"""Configuration invariants of the accounts app, reported by `manage.py check`."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_session_and_hashing(app_configs, **kwargs):
    problems = []
    if settings.PASSWORD_HASHERS[0] != "django.contrib.auth.hashers.Argon2PasswordHasher":
        problems.append(
            Warning("Passwords are not hashed with Argon2 first.", id="accounts.W001")
        )
    if settings.TIME_ZONE != "UTC":
        problems.append(Error("TIME_ZONE must be UTC so audit times compare.", id="accounts.E001"))
    if getattr(settings, "IS_PRODUCTION", False) and not settings.TLS:
        problems.append(
            Error(
                "LIGHTBOX_ENV=production requires LIGHTBOX_TLS=1 (HIPAA: encryption in transit).",
                id="accounts.E002",
            )
        )
    return problems
