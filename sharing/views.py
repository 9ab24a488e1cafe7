"""Share links and the recipient's pages; the "Share this study" page for clinicians and patients.

The recipient never has a user session: `/s/<token>` exchanges the link token for a short-lived
share cookie (HttpOnly, SameSite=Strict, bound to one share) and moves on to `/share/`, a
token-free address. Nothing about the patient or the study is shown before verification.
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.policy import Action, can
from accounts.stepup import require_fresh_step_up, step_up_url
from archive import access
from sharing import downloads, ratelimit, services
from sharing.emails import link_path
from sharing.errors import ShareRefused
from sharing.forms import BirthDateForm, CodeForm, ShareCreateForm
from sharing.models import Share
from sharing.principal import SharePrincipal
from sharing.tokens import format_code

VIEWER_PATH = "/viewer/{study}/"

_STATE_PAGES = {
    # reason -> (status, heading, text)
    "revoked": (410, "Access revoked", "The sender has withdrawn access to these images."),
    "expired": (410, "Link expired", "This link has expired. Ask the sender for a new one."),
    "max_opens": (410, "Link used up", "This link has been opened as many times as the sender allowed."),
    "locked": (
        423,
        "Temporarily locked",
        "Too many wrong answers. The link is locked for a while and the sender has been told. Try again later.",
    ),
    "unknown": (404, "Link not valid", "This link is not valid. Check that you copied all of it."),
    "no_session": (
        403,
        "Session ended",
        "Your viewing session has ended. Open the link from your message again to continue.",
    ),
    "rate_limited": (429, "Too many attempts", "Too many attempts from your network. Wait a while and try again."),
}


def _state_page(request, reason: str):
    status, heading, text = _STATE_PAGES[reason]
    return render(request, "sharing/state.html", {"heading": heading, "text": text, "reason": reason}, status=status)


def _rate_limited(request):
    return ratelimit.too_many(request)


def _set_share_cookie(response, key: str, session) -> None:
    max_age = max(1, int((session.expires_at - timezone.now()).total_seconds()))
    response.set_cookie(
        settings.LIGHTBOX_SHARE_COOKIE_NAME,
        key,
        max_age=max_age,
        path="/",
        secure=settings.TLS,
        httponly=True,
        samesite="Strict",
    )


def _current_session(request):
    """The live share session of this browser and the reason it cannot be used (or None)."""
    key = request.COOKIES.get(settings.LIGHTBOX_SHARE_COOKIE_NAME)
    session = services.session_for_key(key)
    if session is None:
        # A session that ended because its share was revoked or expired says so, not just "ended".
        return None, services.ended_session_reason(key) or "no_session"
    share = services.refresh_lock(session.share)
    session.share = share
    reason = share.unavailable_reason()
    return session, reason


@require_GET
def open_link(request, token: str):
    """GET /s/<token>: check the link, start a share session, continue at the token-free /share/."""
    # SECURITY: the per-address budget is checked before any lookup, so guessing costs nothing here.
    if ratelimit.is_blocked(request):
        return _rate_limited(request)
    share = services.find_by_token(token)
    if share is None:
        ratelimit.note_failure(request)
        return _state_page(request, "unknown")
    share = services.refresh_lock(share)
    reason = share.unavailable_reason() or ("max_opens" if share.opens_exhausted else None)
    if reason is not None:
        services.record_refusal(share, reason, request)
        return _state_page(request, reason)
    session, key = services.start_session(share, request)
    # A page, not a 302: after a cross-site navigation (a webmail link) browsers withhold a
    # SameSite=Strict cookie for the whole redirect chain; a navigation started by our own page
    # carries it. The page replaces its history entry, so the token leaves the address bar.
    response = render(request, "sharing/continue.html", {"next": reverse("sharing:landing")})
    _set_share_cookie(response, key, session)
    return response


def _no_referrer(view):
    """The link's URL holds its token: nothing loaded or followed from it may send it as a Referer."""

    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


open_link = _no_referrer(open_link)


def _verify_context(session, form=None, error: str = ""):
    share = session.share
    if form is None:
        form = BirthDateForm() if share.verification == Share.Verification.DATE_OF_BIRTH else CodeForm()
    return {
        "method": share.verification,
        "form": form,
        "error": error,
        "code_sent": bool(session.email_code_hash),
        "sign_in_url": f"{reverse('accounts:login')}?next={quote(reverse('sharing:landing'))}",
    }


@require_GET
def landing(request):
    """GET /share/: the verification form, or (once verified) the share's page with the viewer link."""
    session, reason = _current_session(request)
    if reason is not None:
        return _state_page(request, reason)
    share = session.share
    if session.verified_at is None:
        return render(request, "sharing/verify.html", _verify_context(session))
    show_phi = share.phi_display == Share.PHIDisplay.FULL
    context = {
        "share": share,
        "viewer_url": VIEWER_PATH.format(study=share.study.study_instance_uid),
        "can_download": share.download == Share.Download.ORIGINAL,
        "show_phi": show_phi,
        "patient_name": share.study.patient.patient_name.replace("^", " ").strip() if show_phi else "",
        "study_description": share.study.study_description if show_phi else "",
        "study_date": share.study.study_date if show_phi else "",
        "series_count": share.series.count() or share.study.number_of_series,
    }
    return render(request, "sharing/landing.html", context)


@require_POST
def verify_view(request):
    """POST /share/verify/: check the code / date of birth / e-mailed code / signed-in account."""
    if ratelimit.is_blocked(request):
        return _rate_limited(request)
    session, reason = _current_session(request)
    if reason is not None:
        return _state_page(request, reason)
    if session.verified_at is not None:
        return _redirect_landing()
    share = session.share
    kwargs = {}
    if share.verification == Share.Verification.DATE_OF_BIRTH:
        form = BirthDateForm(request.POST)
        if not form.is_valid():
            return render(request, "sharing/verify.html", _verify_context(session, form, "Enter a date."), status=400)
        kwargs["birth_date"] = form.cleaned_data["birth_date"]
    elif share.verification in (Share.Verification.ACCESS_CODE, Share.Verification.EMAIL_CODE):
        form = CodeForm(request.POST)
        if not form.is_valid():
            return render(request, "sharing/verify.html", _verify_context(session, form, "Enter the code."), status=400)
        kwargs["code"] = form.cleaned_data["code"]
    else:
        form = None
    result = services.verify(session=session, request=request, **kwargs)
    if result.ok:
        return _redirect_landing()
    if result.error in _STATE_PAGES:
        return _state_page(request, result.error)
    ratelimit.note_failure(request)
    if result.locked:
        return _state_page(request, "locked")
    messages = {
        Share.Verification.ACCESS_CODE: "That code is not right. Check it and try again.",
        Share.Verification.DATE_OF_BIRTH: "That date of birth does not match.",
        Share.Verification.EMAIL_CODE: "That code is not right or has expired. Ask for a new one if needed.",
        Share.Verification.ACCOUNT: "Sign in as the person this share was sent to, then try again.",
    }
    context = _verify_context(session, None, messages.get(share.verification, "Verification failed."))
    return render(request, "sharing/verify.html", context, status=400)


@require_POST
def send_code(request):
    """POST /share/code/: e-mail a one-time code to the recipient's address on file."""
    if ratelimit.is_blocked(request):
        return _rate_limited(request)
    session, reason = _current_session(request)
    if reason is not None:
        return _state_page(request, reason)
    if session.share.verification != Share.Verification.EMAIL_CODE:
        raise Http404("no such page")
    # Counted against the address too, so the endpoint cannot be used to flood a mailbox.
    ratelimit.note_failure(request)
    services.send_email_code(session=session, request=request)
    session.email_code_hash = "sent"
    context = _verify_context(session)
    context["notice"] = "We sent a code to the e-mail address the sender gave. It is valid for a few minutes."
    return render(request, "sharing/verify.html", context)


@require_POST
def leave(request):
    """POST /share/leave/: end this browser's share session."""
    session, _ = _current_session(request)
    if session is not None:
        session.__class__.objects.filter(pk=session.pk).update(ended_at=timezone.now(), end_reason="left")
    response = _state_page(request, "no_session")
    response.status_code = 200
    response.delete_cookie(settings.LIGHTBOX_SHARE_COOKIE_NAME, samesite="Strict")
    return response


def _redirect_landing():
    return HttpResponseRedirect(reverse("sharing:landing"))


def _downloadable_session(request):
    """The verified session of a share with download right, or Http404 (view-only shares have no download)."""
    session, reason = _current_session(request)
    # SECURITY: one answer (404) for no session, unverified, unusable and view-only shares.
    if reason is not None or session.verified_at is None or session.share.download != Share.Download.ORIGINAL:
        raise Http404("no such page")
    return session


@require_POST
def download_start(request):
    """POST /share/download/: issue a single-use link (valid minutes) and go there."""
    session = _downloadable_session(request)
    token = services.create_download_link(session=session, request=request)

    # The token rides in the query string, which the log scrubber removes from every line.
    return HttpResponseRedirect(f"{reverse('sharing:download-zip')}?key={token}", status=303)


@require_GET
def download_zip(request):
    """GET /share/download/zip?key=...: the streamed ZIP of the share's scope, once."""
    session = _downloadable_session(request)
    link = services.consume_download_link(session=session, token=request.GET.get("key", ""))
    if link is None:
        raise Http404("no such download")
    principal = SharePrincipal(session)
    instances = list(
        principal.instances()
        .select_related("series")
        .order_by("series__series_number", "series_id", "instance_number", "pk")
    )
    body = downloads.stream_and_audit(share=session.share, request=request, instances=instances)
    response = StreamingHttpResponse(body, content_type="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="share-{session.share.pk}.zip"'
    # PRIVACY: PHI; no cache on the way may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- creating shares outside the admin (clinicians from the viewer, patients from their list) ---


@login_required
@require_http_methods(["GET", "POST"])
def new_share(request, study_uid: str):
    """GET/POST /share/new/<study_uid>/: "Share this study"."""
    study = access.get_study(request.user, study_uid)  # 404 for unknown and forbidden alike
    if not (can(request.user, Action.SHARE_MANAGE, study) or services.is_own_study(request.user, study)):
        raise Http404("no such study")
    form = ShareCreateForm(request.POST or None, study=study)
    error = ""
    step_up_link = ""
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_share(
                creator=request.user,
                step_up_fresh=require_fresh_step_up(request.session),
                request=request,
                **form.service_kwargs(),
            )
        except ShareRefused as exc:
            error = exc.message
            if exc.step_up:
                step_up_link = step_up_url(request.path)
        else:
            return _created_page(request, created)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "sharing/new.html",
        {"form": form, "study": study, "error": error, "step_up_link": step_up_link},
        status=status,
    )


def _created_page(request, created, *, template: str = "sharing/created.html", extra=None):
    """The one page that shows the link and the access code; they are not stored anywhere readable."""
    context = {
        "share": created.share,
        "link": request.build_absolute_uri(link_path(created.token)),
        "access_code": created.access_code,
        "formatted_code": _format(created.access_code),
        **(extra or {}),
    }
    return render(request, template, context)


def _format(code):
    return format_code(code) if code else ""
