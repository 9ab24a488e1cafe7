"""The study list, the viewer page, its socket ticket and the principal-checked series thumbnail."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import Http404, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accounts.policy import Action, can
from archive.models import Series
from audit.services import record
from viewer import tickets
from viewer.overlay_info import format_da, format_person_name
from viewer.pool import PoolClosed, PoolError, RenderJob
from viewer.principal import principal_for_request
from viewer.render import CT_WINDOW_PRESETS, RenderError, RenderParams
from viewer.rendering import get_pool, source_for
from viewer.study_search import StudySearchForm, search

logger = logging.getLogger("lightbox.viewer")
PAGE_SIZE = 25
THUMBNAIL_SIDE = 128


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def home(request):
    """The study list. Searches are POSTed so patient names never appear in URLs or logs."""
    memberships = request.user.memberships.select_related("organization").order_by("organization__name", "role")
    may_view = bool(can(request.user, Action.STUDY_VIEW))
    principal = principal_for_request(request)
    form = StudySearchForm(request.POST) if request.method == "POST" else StudySearchForm()
    page, rows = None, []
    if may_view and principal is not None:
        if request.method == "POST":
            criteria = form.cleaned_data if form.is_valid() else None
        else:
            criteria = {}
        if criteria is not None:
            studies = search(principal.studies(), criteria)
            number = criteria.get("page") or _page_from_query(request)
            page = Paginator(studies, PAGE_SIZE).get_page(number)
            rows = [
                {"study": s, "name": format_person_name(s.patient.patient_name), "date": format_da(s.study_date),
                 "modalities": s.modalities_in_study.replace("\\", ", ")}
                for s in page.object_list
            ]
    return render(
        request,
        "viewer/home.html",
        {
            "memberships": memberships,
            "may_view": may_view,
            "may_share": bool(can(request.user, Action.SHARE_MANAGE)),
            "is_patient": any(m.role == "patient" for m in memberships),
            "form": form,
            "page": page,
            "rows": rows,
        },
    )


def _page_from_query(request) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _visible_study(principal, study_uid: str):
    study = principal.studies().filter(study_instance_uid=study_uid).select_related("patient").first()
    if study is None:
        raise Http404("no such study")
    return study


def series_list(principal, study) -> list[dict]:
    """The series of `study` the principal may render, in series-number order, for the page data."""
    counts = {
        row["series_id"]: row
        for row in principal.instances()
        .filter(series__study=study, rows__isnull=False)
        .values("series_id")
        .annotate(instances=Count("pk"), frames=Sum("number_of_frames"))
    }
    series = Series.objects.filter(pk__in=counts).order_by("series_number", "pk")
    return [
        {
            "uid": s.series_instance_uid,
            "description": s.series_description,
            "modality": s.modality,
            "number": s.series_number,
            "instances": counts[s.pk]["instances"],
            "frames": counts[s.pk]["frames"] or counts[s.pk]["instances"],
            "thumbnail": reverse("viewer:thumbnail", args=[study.study_instance_uid, s.series_instance_uid]),
        }
        for s in series
    ]


def presets() -> list[dict]:
    return [
        {"key": str(i), "name": name, "center": center, "width": width}
        for i, (name, (center, width)) in enumerate(CT_WINDOW_PRESETS.items(), start=1)
    ]


@require_GET
def viewer_page(request, study_uid: str):
    principal = principal_for_request(request)
    if principal is None:
        if not request.user.is_authenticated and request.COOKIES.get(settings.LIGHTBOX_SHARE_COOKIE_NAME):
            # A share recipient whose share ended: the share page says why (revoked, expired, used up).
            return redirect("sharing:landing")
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise Http404("no such study")
    study = _visible_study(principal, study_uid)
    if hasattr(principal, "bind"):
        principal.bind(study)
    data = {
        "study": study.study_instance_uid,
        "description": study.study_description,
        "ticket_url": reverse("viewer:ticket"),
        "socket_url": "/ws/viewer/",
        "session_socket_url": "/ws/session/",
        "list_url": reverse("home") if principal.can_list_studies() else None,
        "csrf_token": get_token(request),
        "principal": principal.kind,
        "series": series_list(principal, study),
        "presets": presets(),
        "overlay": {"phi": principal.may_see_phi(study), "watermark": principal.watermark_text() is not None},
    }
    record(
        action="viewer.opened",
        actor=principal.audit_actor,
        request=request,
        organization=study.organization_id,
        object_type="study",
        object_id=study.study_instance_uid,
        details={**principal.audit_details, "series": len(data["series"])},
    )
    share_url = None
    if principal.kind == "user" and can(request.user, Action.SHARE_MANAGE, study).allowed:
        share_url = reverse("sharing:new", args=[study.study_instance_uid])
    return render(
        request, "viewer/viewer.html", {"data": data, "study": study, "principal": principal, "share_url": share_url}
    )


class _TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    study: str = Field(min_length=1, max_length=64, pattern=r"^[0-9.]+$")


def _json_error(status: int, message: str, code: str) -> JsonResponse:
    response = JsonResponse({"error": message, "code": code}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@require_POST
def ticket(request):
    """Issue a one-time socket ticket for a study the principal may open (404 otherwise)."""
    principal = principal_for_request(request)
    if principal is None:
        return _json_error(403, "sign in to open the viewer", "forbidden")
    try:
        body = _TicketRequest.model_validate_json(request.body or b"")
    except ValidationError:
        return _json_error(400, 'expected a JSON body {"study": "<study instance uid>"}', "bad_request")
    if not principal.studies().filter(study_instance_uid=body.study).exists():
        return _json_error(404, "no such study", "not_found")
    if not request.session.session_key:
        # A share recipient may have no session yet; a modified session gets saved and its cookie
        # sent, so the socket's handshake carries the key the ticket is bound to.
        request.session["lightbox.viewer"] = True
        request.session.save()
    token = tickets.issue(
        session_key=request.session.session_key, study_uid=body.study, principal_kind=principal.kind
    )
    response = JsonResponse({"ticket": token, "expires_in": tickets.TICKET_SECONDS})
    response.headers["Cache-Control"] = "no-store"
    return response


def _thumbnail_job(request, study_uid: str, series_uid: str):
    principal = principal_for_request(request)
    if principal is None:
        raise Http404("no such series")
    study = _visible_study(principal, study_uid)
    if hasattr(principal, "bind"):
        principal.bind(study)
    instances = list(
        principal.instances()
        .filter(series__study=study, series__series_instance_uid=series_uid, rows__isnull=False)
        .order_by("instance_number", "sop_instance_uid")
    )
    if not instances:
        raise Http404("no such series")
    instance = instances[len(instances) // 2]  # the middle of a stack; its edges are often blank
    redactions = () if principal.may_see_phi(study) else tuple(principal.redactions_for(instance))
    params = RenderParams(
        frame=instance.number_of_frames // 2,
        width=THUMBNAIL_SIDE,
        height=THUMBNAIL_SIDE,
        format="jpeg",
        quality=80,
        watermark=principal.watermark_text(),
        redactions=redactions,
    )
    return RenderJob(source=source_for(instance), params=params)


@require_GET
async def series_thumbnail(request, study_uid: str, series_uid: str):
    """A series' middle image at most 128 px, for users and share recipients alike (no-store)."""
    job = await sync_to_async(_thumbnail_job, thread_sensitive=False)(request, study_uid, series_uid)
    try:
        result = await get_pool().run(job)
    except RenderError as exc:
        return _json_error(422, str(exc), exc.code)
    except PoolClosed:
        return _json_error(503, "the render service is restarting; try again", "unavailable")
    except PoolError as exc:
        logger.warning("thumbnail render failed: %s", type(exc).__name__)
        return _json_error(422, "the image could not be rendered", "render_failed")
    response = HttpResponse(result.data, content_type=result.media_type)
    response.headers["Cache-Control"] = "no-store"
    return response
