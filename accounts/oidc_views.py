"""OpenID Connect sign-in views: start (redirect to the provider) and callback.

Both run before the second factor (they are how a user gets one, and /oidc/ is listed in
LIGHTBOX_BEFORE_SECOND_FACTOR_PREFIXES). A provider that asserted MFA satisfies the second factor;
otherwise the session stays unverified and the second-factor middleware sends the user on to
local OTP verification or enrolment.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib import auth
from django.http import Http404
from django.shortcuts import render
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.mfa import SESSION_VERIFIED_AT, mark_verified
from accounts.middleware import allow_before_second_factor
from accounts.oidc import BACKEND_PATH, OIDCLoginRefused, oidc_setting, sso_enabled
from audit.services import record

logger = logging.getLogger("lightbox.oidc")

# A sign-in started longer ago than this is refused at the callback (its state is stale).
STATE_MAX_AGE_SECONDS = 15 * 60


def _refused(request, exc: OIDCLoginRefused, *, audit: bool = True):
    logger.warning("OIDC sign-in refused: %s", exc.reason)
    if audit:
        record(
            action="auth.login_failed",
            actor=None,
            request=request,
            outcome="failure",
            object_type="user",
            details={"method": "oidc", "reason": exc.reason},
        )
    return render(
        request,
        "accounts/sso_failed.html",
        {"message": exc.message, "label": settings.LIGHTBOX_OIDC_LABEL},
        status=exc.status,
    )


class SignInWithProvider(OIDCAuthenticationRequestView):
    """Start a sign-in: remember state, nonce and PKCE verifier in the session, go to the provider."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, **kwargs):
        # The parent resolves the authorization endpoint here; we do it per request, lazily.
        View.__init__(self, **kwargs)

    def get(self, request):
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except OIDCLoginRefused as exc:
            return _refused(request, exc, audit=False)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class ProviderCallback(OIDCAuthenticationCallbackView):
    """Finish a sign-in: check state, let the backend verify the tokens, sign in, honour MFA."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request):
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            return self._complete(request)
        except OIDCLoginRefused as exc:
            return _refused(request, exc)

    def _complete(self, request):
        state = request.GET.get("state")
        states = request.session.get("oidc_states")
        entry = states.get(state) if isinstance(states, dict) and state else None
        if entry is not None:
            # SECURITY: each state is single-use, so a callback URL cannot be replayed.
            del states[state]
            request.session["oidc_states"] = states
            request.session.save()
        if request.GET.get("error"):
            raise OIDCLoginRefused("provider_error", "The identity provider did not sign you in.", 403)
        if not request.GET.get("code") or not state:
            raise OIDCLoginRefused("missing_code_or_state")
        if not isinstance(entry, dict):
            # SECURITY: a callback this browser did not start (login CSRF, a replayed or forged link).
            raise OIDCLoginRefused("state_mismatch")
        if time.time() - float(entry.get("added_on") or 0) > STATE_MAX_AGE_SECONDS:
            raise OIDCLoginRefused("state_expired", "The sign-in took too long. Please try again.")
        user = auth.authenticate(request=request, nonce=entry.get("nonce"), code_verifier=entry.get("code_verifier"))
        if user is None or not user.is_active:
            if BACKEND_PATH not in settings.AUTHENTICATION_BACKENDS:
                raise OIDCLoginRefused("sso_backend_disabled", "Single sign-on is not enabled.", 403)
            # Another backend refused first (django-axes: this address is locked out).
            raise OIDCLoginRefused("refused_by_policy", "Sign-in is not possible right now. Try again later.", 403)
        self.user = user
        response = self.login_success()
        result = getattr(request, "lightbox_oidc", None)
        if result is not None and result.mfa:
            self._accept_provider_mfa(request, user, result)
        return response

    def _accept_provider_mfa(self, request, user, result) -> None:
        mark_verified(request, method=f"oidc:{result.mfa}")
        if result.auth_time is not None:
            # SECURITY: step-up freshness counts from when the user actually authenticated at the
            # provider, not from now: a provider session hours old must not count as a fresh MFA.
            request.session[SESSION_VERIFIED_AT] = min(time.time(), result.auth_time)
        record(
            action="auth.sso_mfa_accepted",
            actor=user,
            request=request,
            object_type="user",
            object_id=user.pk,
            details={"method": f"oidc:{result.mfa}", "issuer": result.issuer},
        )


sign_in_with_provider = allow_before_second_factor(SignInWithProvider.as_view())
provider_callback = allow_before_second_factor(ProviderCallback.as_view())
