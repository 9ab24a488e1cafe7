"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3 and 10.7).

Access-checked like every other DICOMweb path (through archive.access), rendered by the same
engine and worker pool as the viewer, and sent with `Cache-Control: no-store`.
"""

from __future__ import annotations

import logging
import secrets

from asgiref.sync import sync_to_async
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from archive import access
from archive.dicomweb.auth import dicomweb_view
from audit.services import arecord, record
from config.client_ip import client_ip_var
from config.recheck_cache import MISSING, RecheckCache
from viewer.pool import PoolClosed, PoolError, RenderJob
from viewer.render import RenderError
from viewer.rendered_params import BadRenderQuery, render_params
from viewer.rendering import get_pool, source_for

logger = logging.getLogger("lightbox.viewer")
MAX_MULTIPART_IMAGES = 2000


def _error(status: int, message: str, code: str) -> JsonResponse:
    return JsonResponse({"error": message, "code": code}, status=status)


def _db(func):
    """Run ORM work off the event loop, without queueing on Django's single sync thread."""
    return sync_to_async(func, thread_sensitive=False)


async def _render(instance, params, source=None):
    if source is None:
        source = await _db(source_for)(instance)
    return await get_pool().run(RenderJob(source=source, params=params))


# (user, client address, UIDs) -> (Instance, Source) found visible moments ago; access rules
# depend on the client's network, hence the address in the key. See config.recheck_cache.
_recent_instances = RecheckCache()


def _instance_key(user, study, series, instance) -> tuple:
    return (user.pk, client_ip_var.get(), study, series, instance)


def _recent_instance(user, study, series, instance):
    """(Instance, Source) if this caller was allowed it moments ago (no database work), else None."""
    hit = _recent_instances.get(_instance_key(user, study, series, instance))
    return None if hit is MISSING else hit


def _instance_and_source(user, study, series, instance):
    found = access.get_instance(user, study, series, instance)
    value = (found, source_for(found))
    _recent_instances.put(_instance_key(user, study, series, instance), value)
    return value


async def _lookup(request, study, series, instance):
    return _recent_instance(request.user, study, series, instance) or await _db(_instance_and_source)(
        request.user, study, series, instance
    )


async def _audit(request, *, action, obj_type, obj_id, organization_id, outcome="success", **details):
    await arecord(action=action, actor=request.user, request=request, organization=organization_id,
                  object_type=obj_type, object_id=obj_id, outcome=outcome, details=details)


async def _single_image(request, instance, *, frame: int, thumbnail: bool, obj_type: str, obj_id: str, source=None):
    try:
        params, media_type = render_params(request.GET, request.headers.get("Accept"), rows=instance.rows or 1,
                                           columns=instance.columns or 1, frame=frame, thumbnail=thumbnail)
    except BadRenderQuery as exc:
        return _error(exc.status, str(exc), "bad_request" if exc.status == 400 else "not_acceptable")
    if frame >= instance.number_of_frames:
        return _error(400, f"frame: expected 1..{instance.number_of_frames}, got {frame + 1}", "bad_frame")
    action = "dicomweb.thumbnail" if thumbnail else "dicomweb.rendered"
    try:
        result = await _render(instance, params, source)
    except RenderError as exc:
        await _audit(request, action=action, obj_type=obj_type, obj_id=obj_id,
                                    organization_id=instance.organization_id, outcome="failure", code=exc.code)
        return _error(422, str(exc), exc.code)
    except PoolClosed:
        return _error(503, "the render service is restarting; try again", "unavailable")
    except PoolError as exc:
        logger.warning("render failed: %s", type(exc).__name__)
        await _audit(request, action=action, obj_type=obj_type, obj_id=obj_id,
                                    organization_id=instance.organization_id, outcome="failure", code=type(exc).__name__)
        return _error(422, "the image could not be rendered", "render_failed")
    await _audit(request, action=action, obj_type=obj_type, obj_id=obj_id,
                                organization_id=instance.organization_id, frames=1, sop_instance_uid=instance.sop_instance_uid)
    response = HttpResponse(result.data, content_type=media_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def _multipart(request, instances_frames, *, obj_type: str, obj_id: str, organization_id: int):
    """Stream `multipart/related` of rendered images, one part per (instance, frame)."""
    first_instance = instances_frames[0][0]
    try:
        _, media_type = render_params(request.GET, request.headers.get("Accept"), rows=first_instance.rows or 1,
                                      columns=first_instance.columns or 1)
    except BadRenderQuery as exc:
        return _error(exc.status, str(exc), "bad_request")
    boundary = secrets.token_hex(16)
    query, accept = request.GET, request.headers.get("Accept")

    async def parts():
        pool = get_pool()
        for instance, frame in instances_frames:
            params, _ = render_params(query, accept, rows=instance.rows or 1, columns=instance.columns or 1, frame=frame)
            source = await _db(source_for)(instance)
            try:
                result = await pool.run(RenderJob(source=source, params=params))
            except (RenderError, PoolError):
                # A part that cannot be rendered is left out rather than sent half-made.
                continue
            yield (f"--{boundary}\r\nContent-Type: {media_type}\r\n"
                   f"Content-Location: {instance.sop_instance_uid}/frames/{frame + 1}\r\n\r\n").encode()
            yield result.data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    record(action="dicomweb.rendered", actor=request.user, request=request, organization=organization_id,
           object_type=obj_type, object_id=obj_id, details={"images": len(instances_frames)})
    response = StreamingHttpResponse(parts(), content_type=f'multipart/related; type="{media_type}"; boundary={boundary}')
    response.headers["Cache-Control"] = "no-store"
    return response


def _frames_of(instances) -> list:
    pairs = []
    for instance in instances:
        for frame in range(instance.number_of_frames):
            pairs.append((instance, frame))
            if len(pairs) >= MAX_MULTIPART_IMAGES:
                return pairs
    return pairs


def _sorted_instances(queryset):
    # Series in their numbered order, then each stack by instance number.
    return list(queryset.order_by("series__series_number", "series_id", "instance_number", "sop_instance_uid"))


def _renderable_in_scope(user, study, series=None):
    instances, organization_id = access.instances_in_scope(user, study, series)
    return _sorted_instances(instances.filter(rows__isnull=False)), organization_id


async def _rendered_scope(request, study, series=None):
    instances, organization_id = await _db(_renderable_in_scope)(request.user, study, series)
    if not instances:
        raise Http404("no renderable instances")
    return await sync_to_async(_multipart)(request, _frames_of(instances), obj_type="series" if series else "study",
                                          obj_id=series or study, organization_id=organization_id)


@require_GET
@dicomweb_view()
async def instance_rendered(request, study, series, instance):
    found, source = await _lookup(request, study, series, instance)
    if found.number_of_frames == 1:
        return await _single_image(request, found, frame=0, thumbnail=False, obj_type="instance", obj_id=instance,
                                   source=source)
    return await sync_to_async(_multipart)(request, _frames_of([found]), obj_type="instance", obj_id=instance,
                                          organization_id=found.organization_id)


@require_GET
@dicomweb_view()
async def frames_rendered(request, study, series, instance, frames):
    found, source = await _lookup(request, study, series, instance)
    try:
        numbers = [int(part) for part in frames.split(",")]
    except ValueError:
        return _error(400, "frames: expected a comma-separated list of frame numbers", "bad_frame")
    if not numbers or any(n < 1 or n > found.number_of_frames for n in numbers):
        return _error(400, f"frames: expected numbers in 1..{found.number_of_frames}", "bad_frame")
    if len(numbers) == 1:
        return await _single_image(request, found, frame=numbers[0] - 1, thumbnail=False, obj_type="instance",
                                   obj_id=instance, source=source)
    return await sync_to_async(_multipart)(request, [(found, n - 1) for n in numbers], obj_type="instance",
                                          obj_id=instance, organization_id=found.organization_id)


@require_GET
@dicomweb_view()
async def series_rendered(request, study, series):
    return await _rendered_scope(request, study, series)


@require_GET
@dicomweb_view()
async def study_rendered(request, study):
    return await _rendered_scope(request, study)


def _representative(instances):
    """The middle image of a stack is a better thumbnail than its first (often a scout edge)."""
    return instances[len(instances) // 2] if instances else None


@require_GET
@dicomweb_view()
async def instance_thumbnail(request, study, series, instance):
    found, source = await _lookup(request, study, series, instance)
    return await _single_image(request, found, frame=0, thumbnail=True, obj_type="instance", obj_id=instance,
                               source=source)


@require_GET
@dicomweb_view()
async def series_thumbnail(request, study, series):
    instances, _ = await _db(_renderable_in_scope)(request.user, study, series)
    chosen = _representative(instances)
    if chosen is None:
        raise Http404("no renderable instances")
    return await _single_image(request, chosen, frame=0, thumbnail=True, obj_type="series", obj_id=series)


@require_GET
@dicomweb_view()
async def study_thumbnail(request, study):
    found = await _db(access.get_study)(request.user, study)

    def first_series_instances():
        series = access.series_for(request.user).filter(study=found).order_by("series_number", "pk").first()
        return [] if series is None else _sorted_instances(series.instances.filter(rows__isnull=False))

    chosen = _representative(await _db(first_series_instances)())
    if chosen is None:
        raise Http404("no renderable instances")
    return await _single_image(request, chosen, frame=0, thumbnail=True, obj_type="study", obj_id=study)
