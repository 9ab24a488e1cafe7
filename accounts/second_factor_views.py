"""Second-factor pages: verification (sign-in and step-up), TOTP enrolment, backup codes, devices.

The verification page is the only page a signed-in user without a verified second factor
reaches (besides enrolment when they have no authenticator yet, and sign-out). See
accounts/middleware.py for the gate and accounts/mfa.py for the session flag.
"""

from __future__ import annotations

import math
import secrets
import time
from base64 import b32encode
from binascii import unhexlify

import segno
from django.apps import apps
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.backup_codes import issue_backup_codes, remaining_codes
from accounts.forms import EnrolTotpForm, RemoveDeviceForm, VerifyCodeForm
from accounts.mfa import has_second_factor_device, is_verified, mark_verified, step_up_is_fresh
from accounts.middleware import allow_before_second_factor
from accounts.models import BackupCodeDevice
from accounts.stepup import STEP_UP_PARAM, step_up_refusal, step_up_required
from audit.services import record

# The TOTP secret being enrolled lives in the session until its first code verifies; only then
# is a device saved (an abandoned enrolment leaves nothing behind).
SESSION_PENDING_TOTP_KEY = "lightbox.enrol.totp_key"
TOTP_KEY_BYTES = 20  # 160 bits, RFC 4226 section 4 recommends at least 128


def _safe_next(request, default: str = "home") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    # SECURITY: only same-site paths; an open redirect after sign-in is a phishing tool.
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(default)


def _audit(request, action: str, *, outcome: str = "success", device=None, **details):
    record(
        action=action,
        actor=request.user,
        request=request,
        object_type="otp_device" if device is not None else "user",
        object_id=device.persistent_id if device is not None else request.user.pk,
        outcome=outcome,
        details=details,
    )


def _device_kind(device) -> str:
    if isinstance(device, TOTPDevice):
        return "Authenticator app (TOTP)"
    if isinstance(device, BackupCodeDevice):
        return "Backup codes"
    return str(device._meta.verbose_name).capitalize()


def _wait_seconds(device) -> int:
    """Seconds until a throttled device accepts another attempt (0 when it does now)."""
    allowed, data = device.verify_is_allowed()
    if allowed:
        return 0
    locked_until = (data or {}).get("locked_until")
    if locked_until is None:
        return 1
    return max(1, math.ceil((locked_until - timezone.now()).total_seconds()))


def _check_code(user, code: str, *, totp: bool):
    """Return (device that accepted the code or None, seconds to wait when throttled)."""
    model = TOTPDevice if totp else BackupCodeDevice
    with transaction.atomic():
        # select_for_update: two requests racing with one code cannot both pass (replay).
        devices = list(model.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
        # SECURITY: a throttled device refuses every attempt until its back-off has passed, so a
        # guesser gets ever fewer tries per minute (django-otp ThrottlingMixin, 1 s, 2 s, 4 s, ...).
        wait = max((_wait_seconds(d) for d in devices), default=0)
        if wait:
            return None, wait
        for device in devices:
            # TOTPDevice.verify_token refuses time steps at or below last_t: no replay.
            if device.verify_token(code):
                return device, 0
    return None, 0


@allow_before_second_factor
@login_required
@require_http_methods(["GET", "POST"])
def verify(request):
    """Ask for a TOTP or backup code: after password sign-in, or again for step-up."""
    user = request.user
    next_url = _safe_next(request)
    step_up = (request.GET.get(STEP_UP_PARAM) or request.POST.get(STEP_UP_PARAM)) == "1"
    verified = is_verified(request)
    if not has_second_factor_device(user):
        return HttpResponseRedirect(f"{reverse('accounts:enrol')}?{request.GET.urlencode()}")
    if verified and (not step_up or step_up_is_fresh(request.session)):
        return redirect(next_url)

    form = VerifyCodeForm(request.POST or None)
    wait = 0
    status = 200
    if request.method == "POST":
        if form.is_valid():
            method = "totp" if form.is_totp else "backup_code"
            device, wait = _check_code(user, form.cleaned_data["code"], totp=form.is_totp)
            if device is not None:
                mark_verified(request, method=method, device=device)
                # SECURITY: a new session key once the second factor passes (session fixation).
                request.session.cycle_key()
                _audit(request, "auth.otp_success", device=device, method=method, step_up=step_up)
                if step_up:
                    _audit(request, "auth.step_up", device=device, method=method)
                if method == "backup_code":
                    left = remaining_codes(user)
                    _audit(request, "auth.backup_code_used", device=device, remaining=left)
                    if left <= 3:
                        messages.warning(
                            request,
                            f"You have {left} backup code{'s' if left != 1 else ''} left. "
                            "Generate new ones on the Security page.",
                        )
                return redirect(next_url)
            if wait:
                _audit(request, "auth.otp_throttled", outcome="denied", method=method, wait_seconds=wait)
                status = 429
            else:
                _audit(request, "auth.otp_failure", outcome="failure", method=method, step_up=step_up)
                form.add_error("code", "That code is not valid (or was already used). Try the current code.")
                status = 400
        else:
            status = 400
    return render(
        request,
        "accounts/verify.html",
        {"form": form, "next": next_url, "step_up": step_up, "wait": wait, "already_verified": verified},
        status=status,
    )


def _pending_key(request) -> str:
    key = request.session.get(SESSION_PENDING_TOTP_KEY)
    try:
        if key and len(unhexlify(key)) == TOTP_KEY_BYTES:
            return key
    except (ValueError, TypeError):
        pass
    key = secrets.token_hex(TOTP_KEY_BYTES)
    request.session[SESSION_PENDING_TOTP_KEY] = key
    return key


def _match_first_code(key: str, code: str):
    """Check a code against the secret being enrolled; return (time step, drift) or None."""
    device = TOTPDevice()  # only for its defaults (step, t0, digits, tolerance)
    totp = TOTP(unhexlify(key), device.step, device.t0, device.digits, 0)
    totp.time = time.time()
    if totp.verify(int(code), device.tolerance):
        return totp.t(), totp.drift
    return None


def _qr_svg(uri: str) -> str:
    # Server-side SVG: no script, no third party, and no style= attributes (the CSP forbids them).
    return segno.make(uri, error="m").svg_inline(scale=5, border=4, dark="#000", light="#fff", title="QR code")


@allow_before_second_factor
@login_required
@require_http_methods(["GET", "POST"])
def enrol(request):
    """Add a TOTP authenticator; the first one also proves the session and issues backup codes."""
    user = request.user
    verified = is_verified(request)
    has_device = has_second_factor_device(user)
    if has_device and not verified:
        # SECURITY: a password alone must not add an authenticator to an account that has one.
        return HttpResponseRedirect(f"{reverse('accounts:verify')}?{request.GET.urlencode()}")
    if has_device and not step_up_is_fresh(request.session):
        # SECURITY: another authenticator is a way back in; confirm the person first.
        return step_up_refusal(request)

    key = _pending_key(request)
    next_url = _safe_next(request)
    form = EnrolTotpForm(request.POST or None)
    status = 200
    if request.method == "POST":
        matched = _match_first_code(key, form.cleaned_data["code"]) if form.is_valid() else None
        if matched is not None:
            step, drift = matched
            with transaction.atomic():
                device = TOTPDevice.objects.create(
                    user=user, name=form.cleaned_data["name"], key=key, confirmed=True, last_t=step, drift=drift
                )
            del request.session[SESSION_PENDING_TOTP_KEY]
            _audit(request, "auth.device_added", device=device, kind="totp")
            if not verified:
                mark_verified(request, method="totp", device=device)
                request.session.cycle_key()
                _audit(request, "auth.otp_success", device=device, method="totp", enrolment=True)
            if not has_device:
                codes = issue_backup_codes(user)
                _audit(request, "auth.backup_codes_regenerated", count=len(codes), reason="first authenticator")
                return render(request, "accounts/backup_codes.html", {"codes": codes, "next": next_url, "first": True})
            messages.success(request, "Authenticator added.")
            return redirect("accounts:security")
        if form.is_valid():
            _audit(request, "auth.otp_failure", outcome="failure", method="totp", enrolment=True)
            form.add_error("code", "That code does not match. Check the clock on your phone and enter the current code.")
        status = 400

    stub = TOTPDevice(user=user, key=key)
    return render(
        request,
        "accounts/enrol.html",
        {
            "form": form,
            "next": next_url,
            "first": not has_device,
            "secret": b32encode(unhexlify(key)).decode(),
            "otpauth_uri": stub.config_url,
            "qr_svg": mark_safe(_qr_svg(stub.config_url)),  # noqa: S308 (segno output, no user input)
        },
        status=status,
    )


@login_required
def security(request):
    """The user's own authenticators and backup-code status."""
    devices = [
        {
            "name": device.name,
            "kind": _device_kind(device),
            "id": device.persistent_id,
            "created_at": getattr(device, "created_at", None),
            "last_used_at": getattr(device, "last_used_at", None),
        }
        for device in devices_for_user(request.user, confirmed=True)
        if not isinstance(device, BackupCodeDevice)
    ]
    return render(
        request,
        "accounts/security.html",
        {
            "devices": devices,
            "can_remove": len(devices) > 1,
            "backup_codes_left": remaining_codes(request.user),
            "has_backup_codes": BackupCodeDevice.objects.filter(user=request.user, confirmed=True).exists(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def backup_codes_new(request):
    """Replace the backup codes (the old ones stop working) and show the new ones once."""
    if request.method == "GET":
        return render(request, "accounts/backup_codes_confirm.html")
    codes = issue_backup_codes(request.user)
    _audit(request, "auth.backup_codes_regenerated", count=len(codes), reason="user request")
    return render(
        request, "accounts/backup_codes.html", {"codes": codes, "next": reverse("accounts:security"), "first": False}
    )


def _own_device(user, persistent_id: str):
    """The user's confirmed device with this persistent id, or None (never another user's)."""
    label, _, raw_id = persistent_id.rpartition("/")
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return None
    if not issubclass(model, Device) or not raw_id.isdigit():
        return None
    return model.objects.filter(user=user, pk=int(raw_id), confirmed=True).first()


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def remove_device(request):
    """Remove one of the user's authenticators, never the last one."""
    form = RemoveDeviceForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        return render(request, "accounts/error.html", {"message": "Say which authenticator to remove."}, status=400)
    with transaction.atomic():
        # Lock the user row: two removals racing must not both see "another one is left".
        get_user_model().objects.select_for_update().filter(pk=request.user.pk).first()
        device = _own_device(request.user, form.cleaned_data["device"])
        if device is None or isinstance(device, BackupCodeDevice):
            message = "No such authenticator on your account."
            return render(request, "accounts/error.html", {"message": message}, status=404)
        others = [
            d
            for d in devices_for_user(request.user, confirmed=True)
            if not isinstance(d, BackupCodeDevice) and d.persistent_id != device.persistent_id
        ]
        if not others:
            # SECURITY: without an authenticator the account would fall back to password-only enrolment.
            message = "This is your only authenticator. Add another one before removing it."
            return render(request, "accounts/error.html", {"message": message}, status=400)
        if request.method == "POST":
            device_id, kind, name = device.persistent_id, _device_kind(device), device.name
            device.delete()
    if request.method == "GET":
        return render(request, "accounts/remove_device.html", {"device": device, "kind": _device_kind(device)})
    record(
        action="auth.device_removed",
        actor=request.user,
        request=request,
        object_type="otp_device",
        object_id=device_id,
        details={"kind": kind},
    )
    messages.success(request, f"Removed {name}.")
    return redirect("accounts:security")
