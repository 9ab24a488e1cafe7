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


# Anything that can change who may read what empties the short-lived decision caches of this
# process at once (other processes re-read within ACCESS_RECHECK_SECONDS).
_DECISION_MODELS = (
    "accounts.User",
    "accounts.ApiToken",
    "accounts.Membership",
    "accounts.AccessRule",
    "archive.StudyGrant",
    "archive.PatientLink",
    "archive.Study",
    "archive.Series",
    "archive.Instance",
    "archive.DerivedCopy",
)


def forget_access_decisions(*args, **kwargs) -> None:
    """Empty the decision caches now and again when the current transaction commits.

    Now, so this process stops using what changed; after commit too, because a request in
    between could have re-read (and remembered) the old rows.
    """
    from django.db import transaction

    from config.recheck_cache import RecheckCache

    RecheckCache.clear_all()
    transaction.on_commit(RecheckCache.clear_all)


def _connect_decision_cache_resets() -> None:
    from django.db.models.signals import m2m_changed, post_delete, post_save

    for label in _DECISION_MODELS:
        for signal in (post_save, post_delete):
            signal.connect(forget_access_decisions, sender=label, weak=False,
                           dispatch_uid=f"recheck-{label}-{id(signal)}")
    m2m_changed.connect(forget_access_decisions, weak=False, dispatch_uid="recheck-m2m")


_connect_decision_cache_resets()
