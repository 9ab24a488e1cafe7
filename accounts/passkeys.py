"""Passkeys (WebAuthn) as a second factor, on top of django-otp-webauthn.

The package supplies the ceremonies (options, attestation and assertion checks, credential
storage) and a CSP-safe browser script. We subclass its four API views to apply Lightbox rules:

- Registration: a signed-in user may add a passkey only (a) while they have no authenticator at
  all (first enrolment, before any second factor exists), or (b) from a session that passed its
  second factor recently (step-up fresh). A password-only session of a user who already has an
  authenticator never may: a stolen password must not be able to add its own second factor.
- Authentication: only as the second factor of a signed-in, password-authenticated user.
  Passwordless (first-factor) passkey sign-in stays off.
- Success marks the session through `accounts.mfa.mark_verified` and cycles the session key.
- Every outcome is audited; bad input is a JSON 4xx, never a 500.

The views are mounted under /webauthn/ with the package's URL names (namespace `otp_webauthn`),
so the package's template tags and script find them. They are marked
`allow_before_second_factor`: the rules above are enforced here, not by the middleware.
"""

from __future__ import annotations

import binascii
import logging

import django_otp
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import exceptions
from django_otp_webauthn.models import WebAuthnCredential
from django_otp_webauthn.utils import rewrite_exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)
from webauthn.helpers.exceptions import WebAuthnException

from accounts.mfa import has_second_factor_device, is_verified, mark_verified, step_up_is_fresh
from accounts.middleware import allow_before_second_factor
from accounts.stepup import step_up_required, step_up_url
from audit.services import record

logger = logging.getLogger("lightbox.accounts.passkeys")
_package_logger = logging.getLogger("django_otp_webauthn")

METHOD = "passkey"


class StepUpRequired(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_detail = "Verify with your authenticator again, then add the passkey."
    default_code = "step_up_required"


class NoPasskeys(exceptions.OTPWebAuthnApiError):
    status_code = 400
    default_detail = "You have no passkey registered. Use another way to verify."
    default_code = "no_passkeys"


def passkeys_of(user):
    """The user's confirmed passkeys, newest first."""
    return WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("-created_at")


def may_register_passkey(request) -> tuple[bool, str]:
    """Whether this request's session may add a passkey to its user, and why not.

    SECURITY: this is the check that stops a stolen password from enrolling its own second factor.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return False, "not_authenticated"
    if not has_second_factor_device(user):
        return True, "first_enrolment"
    if not is_verified(request):
        return False, "user_not_verified"
    if not step_up_is_fresh(request.session):
        return False, "step_up_required"
    return True, "verified"


class _LightboxApiMixin:
    """JSON-only request bodies, and no 500 for malformed input."""

    def _parse_request_data(self, request):
        if request.content_type.split(";", 1)[0] != "application/json":
            # The script always sends JSON (or no body at all to the begin views).
            return {}
        data = super()._parse_request_data(request)
        if not isinstance(data, dict):
            raise exceptions.MalformedRequest()
        return data

    def handle_exception(self, exc):
        if not isinstance(exc, exceptions.OTPWebAuthnApiError) and isinstance(exc, _CLIENT_ERRORS):
            # The package maps the common py_webauthn errors; anything else a crafted body can
            # provoke is still the client's fault, not a server error.
            logger.info("rejected malformed WebAuthn request: %s", type(exc).__name__)
            exc = exceptions.UnprocessableEntity(detail="The passkey response could not be read.")
        return super().handle_exception(exc)


_CLIENT_ERRORS = (WebAuthnException, ValueError, TypeError, KeyError, binascii.Error)


class _RegistrationRules(_LightboxApiMixin):
    def user_is_mfa_enrolled(self, user) -> bool:
        # The package refuses when `user.is_verified()` (django-otp's own flag) is false for an
        # enrolled user. Our session flag is the source of truth (an OIDC sign-in with MFA sets
        # only ours), so "enrolled" here means "has an authenticator and is not verified".
        return has_second_factor_device(user) and not is_verified(self.request)

    def check_can_register(self):
        allowed, reason = may_register_passkey(self.request)
        if allowed:
            return
        if reason == "step_up_required":
            raise StepUpRequired()
        if reason == "user_not_verified":
            raise exceptions.NotVerified(detail=self.messages["user_not_verified"])
        raise exceptions.NotAuthenticated()


class RegistrationBeginView(_RegistrationRules, BeginCredentialRegistrationView):
    pass


class RegistrationCompleteView(_RegistrationRules, CompleteCredentialRegistrationView):
    def post(self, request, *args, **kwargs):
        user = self.get_user()
        state = self.get_state()
        with rewrite_exceptions(logger=_package_logger):
            device = self.get_helper().register_complete(user=user, state=state, data=self.request.data)
        device.name = f"Passkey added {timezone.now():%Y-%m-%d}"
        device.save(update_fields=["name"])
        record(
            action="auth.device_added",
            actor=user,
            request=request,
            object_type="otp_device",
            object_id=device.persistent_id,
            details={"kind": METHOD},
        )
        if not is_verified(request):
            # First enrolment (may_register_passkey allowed it only because the user had no
            # authenticator): the ceremony just proved possession of the new passkey.
            mark_verified(request, method=METHOD, device=device)
            request.session.cycle_key()
            _record_otp(request, user, device, outcome="success", enrolment=True)
        return JsonResponse({"id": device.pk})


class _AuthenticationRules(_LightboxApiMixin):
    def check_can_authenticate(self):
        user = self.get_user()
        # SECURITY: a second factor only. Without a password-authenticated user there is no
        # ceremony, whatever OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN says.
        if user is None or not user.is_active:
            raise exceptions.PasswordlessLoginDisabled()


class AuthenticationBeginView(_AuthenticationRules, BeginCredentialAuthenticationView):
    def post(self, request, *args, **kwargs):
        if not passkeys_of(self.get_user()).exists():
            raise NoPasskeys()
        return super().post(request, *args, **kwargs)


class AuthenticationCompleteView(_AuthenticationRules, CompleteCredentialAuthenticationView):
    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except (exceptions.OTPWebAuthnApiError, *_CLIENT_ERRORS):
            _record_otp(request, request.user, None, outcome="failure", step_up=is_verified(request))
            raise

    def complete_auth(self, device):
        request = self.request
        # SECURITY: the helper already refused another user's credential; check again here,
        # where the session gets its second factor.
        if not request.user.is_authenticated or device.user_id != request.user.pk:
            raise exceptions.CredentialUserMismatch()
        step_up = is_verified(request)
        mark_verified(request, method=METHOD, device=device)
        # A new session key now that the session is worth more (session fixation defence).
        request.session.cycle_key()
        _record_otp(request, request.user, device, outcome="success", step_up=step_up)


def _record_otp(request, user, device, *, outcome: str, step_up: bool = False, enrolment: bool = False) -> None:
    """auth.otp_success / auth.otp_failure (and auth.step_up), shaped like the TOTP page's events."""
    details = {"method": METHOD}
    if enrolment:
        details["enrolment"] = True
    else:
        details["step_up"] = step_up
    common = {
        "actor": user if getattr(user, "is_authenticated", False) else None,
        "request": request,
        "object_type": "otp_device" if device is not None else "user",
        "object_id": device.persistent_id if device is not None else getattr(user, "pk", None) or "",
    }
    if outcome == "success":
        record(action="auth.otp_success", **common, details=details)
        if step_up:
            record(action="auth.step_up", **common, details={"method": METHOD})
    else:
        record(action="auth.otp_failure", **common, outcome="failure", details=details)


# --- The passkeys page -----------------------------------------------------------------------


@login_required
@require_GET
def passkey_list(request):
    """The user's passkeys, with "add" (when this session may) and "remove"."""
    may_add, _ = may_register_passkey(request)
    return render(
        request,
        "accounts/passkeys.html",
        {
            "passkeys": passkeys_of(request.user),
            "may_add": may_add,
            "verify_to_add_url": step_up_url(request.path),
            "passkey_success_url": request.path,
        },
    )


@login_required
@step_up_required
@require_http_methods(["GET", "POST"])
def passkey_remove(request, pk: int):
    """Confirm, then remove one of the user's own passkeys (step-up: a fresh verification)."""
    # Only the user's own credentials exist here; anyone else's id is a 404.
    if request.method == "GET":
        passkey = get_object_or_404(passkeys_of(request.user), pk=pk)
        return render(
            request,
            "accounts/passkey_remove.html",
            {"passkey": passkey, "keeps_an_authenticator": _has_other_authenticator(request.user, passkey)},
        )
    with transaction.atomic():
        # Lock the user row: two removals racing must not both see "another one is left".
        get_user_model().objects.select_for_update().filter(pk=request.user.pk).first()
        passkey = get_object_or_404(passkeys_of(request.user), pk=pk)
        if not _has_other_authenticator(request.user, passkey):
            # SECURITY: with no authenticator left, the next password-only sign-in would be sent to
            # enrolment, where a stolen password could register its own second factor.
            messages.error(request, "Add another passkey or an authenticator app before removing your last one.")
            return redirect("accounts:passkeys")
        device_id = passkey.persistent_id
        passkey.delete()
    record(
        action="auth.device_removed",
        actor=request.user,
        request=request,
        object_type="otp_device",
        object_id=device_id,
        details={"kind": METHOD},
    )
    messages.success(request, "Passkey removed.")
    return redirect("accounts:passkeys")


def _has_other_authenticator(user, passkey) -> bool:
    from accounts.models import BackupCodeDevice

    return any(
        not isinstance(device, BackupCodeDevice) and device.persistent_id != passkey.persistent_id
        for device in django_otp.devices_for_user(user, confirmed=True)
    )


# The package's URL names, so its template tags and script resolve them (namespace otp_webauthn).
urlpatterns = [
    path(
        "registration/begin/",
        allow_before_second_factor(RegistrationBeginView.as_view()),
        name="credential-registration-begin",
    ),
    path(
        "registration/complete/",
        allow_before_second_factor(RegistrationCompleteView.as_view()),
        name="credential-registration-complete",
    ),
    path(
        "authentication/begin/",
        allow_before_second_factor(AuthenticationBeginView.as_view()),
        name="credential-authentication-begin",
    ),
    path(
        "authentication/complete/",
        allow_before_second_factor(AuthenticationCompleteView.as_view()),
        name="credential-authentication-complete",
    ),
    path(
        "jsi18n/",
        allow_before_second_factor(JavaScriptCatalog.as_view(packages=["django_otp_webauthn"])),
        name="js-i18n-catalog",
    ),
]
