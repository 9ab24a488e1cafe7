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
    if getattr(settings, "IS_PRODUCTION", False):
        origins = list(getattr(settings, "OTP_WEBAUTHN_ALLOWED_ORIGINS", []))
        rp_id = getattr(settings, "OTP_WEBAUTHN_RP_ID", "")
        if rp_id in ("", "localhost") or not origins or any(not o.startswith("https://") for o in origins):
            # Passkeys bound to localhost or plain http would not work (or would work for the wrong site).
            problems.append(
                Error(
                    "Set LIGHTBOX_WEBAUTHN_RP_ID to this site's domain and LIGHTBOX_WEBAUTHN_ORIGINS to its "
                    f"https:// origin(s); now {rp_id!r} and {origins!r}.",
                    id="accounts.E003",
                )
            )
    return problems
