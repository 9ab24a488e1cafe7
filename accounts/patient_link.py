"""Self-service linking: a patient proves MRN + date of birth + a code sent to their e-mail, and
their account is tied to that Patient record (they then see its studies, and only those).

PRIVACY/SECURITY: the page answers the same whether or not the MRN and birth date match, so it
cannot be used to find out who is a patient here; codes are hashed in the session, expire, and
a handful of wrong tries ends the attempt. Every step is audited.
"""

from __future__ import annotations

import hmac
import secrets
import time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.mail import send_mail
from django.http import HttpResponseForbidden
from django.shortcuts import redirect, render
from django.utils.crypto import salted_hmac

from accounts.models import Role
from archive.models import Patient, PatientLink
from audit.services import record

SESSION_KEY = "lightbox.patient_link"
CODE_SECONDS = 600
MAX_CODE_TRIES = 5
MAX_STARTS_PER_DAY = 5


class DetailsForm(forms.Form):
    mrn = forms.CharField(label="Patient ID (MRN) on your letter or report", max_length=64)
    birth_date = forms.DateField(label="Date of birth", widget=forms.DateInput(attrs={"type": "date"}))


class CodeForm(forms.Form):
    code = forms.CharField(label="Code from the e-mail", max_length=12)


def _hash(code: str) -> str:
    return salted_hmac("lightbox.accounts.patient-link", code.strip(), algorithm="sha256").hexdigest()


def _patient_orgs(user) -> list[int]:
    return [m.organization_id for m in user.memberships.filter(role=Role.PATIENT)]


def _start(request, form) -> None:
    org_ids = _patient_orgs(request.user)
    birth = form.cleaned_data["birth_date"].strftime("%Y%m%d")
    match = Patient.objects.filter(
        organization_id__in=org_ids, patient_id=form.cleaned_data["mrn"].strip(), patient_birth_date=birth
    ).first()
    code = f"{secrets.randbelow(10**6):06d}"
    # A code is e-mailed either way, so timing and wording do not reveal whether the details matched;
    # only a matching record can be linked with it.
    request.session[SESSION_KEY] = {
        "patient": match.pk if match else None,
        "code": _hash(code),
        "expires": time.time() + CODE_SECONDS,
        "tries": 0,
    }
    send_mail(
        "Your Lightbox verification code",
        f"Your code to link your Lightbox account to your records is {code}. It is valid for 10 minutes.\n"
        "If you did not ask for it, you can ignore this message.",
        settings.DEFAULT_FROM_EMAIL,
        [request.user.email],
    )
    record(action="patient_link.code_sent", actor=request.user, request=request, object_type="user",
           object_id=request.user.pk, details={"matched": bool(match)})


def _finish(request, form) -> bool:
    state = request.session.get(SESSION_KEY) or {}
    if not state or time.time() > state["expires"] or state["tries"] >= MAX_CODE_TRIES:
        request.session.pop(SESSION_KEY, None)
        messages.error(request, "That code has expired or was tried too often. Start again.")
        return False
    state["tries"] += 1
    request.session[SESSION_KEY] = state
    good = hmac.compare_digest(state["code"], _hash(form.cleaned_data["code"])) and state["patient"] is not None
    if not good:
        record(action="patient_link.failed", actor=request.user, request=request, outcome="failure",
               object_type="user", object_id=request.user.pk)
        form.add_error("code", "That code does not match the details you entered.")
        return False
    request.session.pop(SESSION_KEY, None)
    link, _ = PatientLink.objects.get_or_create(
        user=request.user, patient_id=state["patient"], defaults={"method": PatientLink.Method.SELF_SERVICE}
    )
    record(action="patient_link.created", actor=request.user, request=request, object_type="patient_link",
           object_id=link.pk, details={"method": link.method})
    return True


@login_required
def link_patient(request):
    if not _patient_orgs(request.user):
        return HttpResponseForbidden("Only patient accounts link themselves to patient records.")
    if request.method == "GET" and request.GET.get("restart"):
        request.session.pop(SESSION_KEY, None)
    details, code_form = DetailsForm(), CodeForm()
    if request.method == "POST" and "mrn" in request.POST:
        details = DetailsForm(request.POST)
        starts_key = f"patient-link-starts:{request.user.pk}"
        if cache.get(starts_key, 0) >= MAX_STARTS_PER_DAY:
            details.add_error(None, "Too many attempts today. Try again tomorrow or ask the imaging team.")
        elif details.is_valid():
            cache.set(starts_key, cache.get(starts_key, 0) + 1, 24 * 3600)
            _start(request, details)
            messages.info(request, "If the details match our records, we sent a code to your e-mail address.")
            return redirect("accounts:link_patient")
    elif request.method == "POST":
        code_form = CodeForm(request.POST)
        if code_form.is_valid() and _finish(request, code_form):
            messages.success(request, "Your account is now linked to your records.")
            return redirect("home")
    return render(
        request,
        "accounts/link_patient.html",
        {"details": details, "code_form": code_form, "awaiting_code": SESSION_KEY in request.session},
    )
