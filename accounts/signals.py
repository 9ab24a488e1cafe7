"""Audit hooks for sign-in, sign-out and failed sign-in."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.services import record


@receiver(user_logged_in)
def _on_login(sender, request, user, **kwargs):
    method = "oidc" if getattr(user, "backend", "") == "accounts.oidc.LightboxOIDCBackend" else "password"
    record(action="auth.login", actor=user, request=request, object_type="user", object_id=user.pk,
           details={"method": method})


@receiver(user_logged_out)
def _on_logout(sender, request, user, **kwargs):
    if user is not None:
        record(action="auth.logout", actor=user, request=request, object_type="user", object_id=user.pk)


@receiver(user_login_failed)
def _on_login_failed(sender, credentials, request=None, **kwargs):
    # PRIVACY/SECURITY: never store the attempted password; the e-mail tried is kept (lower-cased,
    # truncated) because repeated failures against one account are what an auditor looks for.
    tried = str(credentials.get("username") or credentials.get("email") or "")[:254].lower()
    record(
        action="auth.login_failed",
        actor=None,
        request=request,
        outcome="failure",
        object_type="user",
        details={"attempted_email": tried},
    )
