"""STOW-RS (PS3.18 10.5): store instances sent as `multipart/related; type="application/dicom"`.

A request body can be gigabytes of PHI, so it is never held in memory or written to disk as
it arrives. Django's ASGI handler would spool the whole body to a temporary file before any
view runs (`ASGIHandler.read_body`, above FILE_UPLOAD_MAX_MEMORY_SIZE), so `StreamStowBodies`,
an ASGI middleware outside Django, takes STOW-RS bodies off the wire instead: Django gets an
empty body, the view gets the real one as `request.scope[BODY_SCOPE_KEY]`, and each part goes
from the network through the multipart parser straight into the encrypting blob writer,
about a megabyte at a time. The rest of the request (sessions, authentication, CSRF, headers,
routing, middleware) is ordinary Django. Under WSGI, or without the middleware, the view reads
`request` itself; that still works, but Django has spooled the body first.

Who may store where: a write-scoped bearer token or a signed-in session (CSRF-checked) of a
user who may import studies (`Action.STUDY_IMPORT`) into exactly one organisation, or the one
named with `?organization=<slug>`. Every request is audited once, with counts and UIDs.

Response (PS3.18 10.5.3, Annex I): DICOM JSON with Referenced SOP Sequence (stored, and
identical re-sends) and Failed SOP Sequence (with Failure Reason); 200 when everything was
stored, 202 when some parts failed, 409 when none was stored, 400 for a malformed body, 415
for a media type other than application/dicom parts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from pydicom.uid import UID

from accounts.models import Organization
from accounts.policy import Action, organizations_where
from archive.dicomweb.auth import dicomweb_view
from archive.dicomweb.multipart_parser import ContentType, MalformedMultipart, MultipartReader, boundary_of
from archive.services import IngestBatch, IngestResult, Status
from audit.models import ActorType, Outcome
from audit.services import record
from config.handlers import resolve_scope

logger = logging.getLogger("lightbox.dicomweb")

DICOM_JSON = "application/dicom+json"
BODY_SCOPE_KEY = "lightbox.stow_body"
# Body bytes handed from the event loop to the ingest thread at a time.
READ_CHUNK = 1024 * 1024
# URL names whose POST bodies StreamStowBodies takes over (archive/dicomweb/urls.py).
STOW_URL_NAMES = frozenset({"dicomweb:studies", "dicomweb:study"})
# At most this many UIDs go into one audit event; the counts are always complete.
AUDIT_UID_LIMIT = 1000

# PS3.18 I.2.2 Failure Reason for a part we could not even identify as a DICOM object.
CANNOT_UNDERSTAND = 0xC000
# When nothing could be stored because of the server's storage (disk full, I/O error)
STORAGE_RETRY_AFTER_SECONDS = 60


class ClientDisconnected(Exception):
    """The client went away before the request body ended."""


class StreamedBody:
    """One request body, read by the ingest thread straight from the ASGI `receive` channel.

    Django gets `app_receive`: an empty body at once, then (for its disconnect listener) the
    real channel once the body has been read, so the two never call `receive` concurrently.
    """

    def __init__(self, receive) -> None:
        self._receive = receive
        self._loop = asyncio.get_running_loop()
        self._handed_empty_body = False
        self._finished = False
        self._disconnected = False
        self._released = asyncio.Event()

    async def app_receive(self) -> dict:
        if not self._handed_empty_body:
            self._handed_empty_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._released.wait()
        if self._disconnected:
            return {"type": "http.disconnect"}
        return await self._receive()

    async def _read_into(self, buffer: bytearray, size: int) -> int:
        if self._disconnected:
            raise ClientDisconnected
        have = 0
        while have < size and not self._finished:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._disconnected = True
                self._released.set()
                raise ClientDisconnected
            body = message.get("body", b"")
            buffer += body
            have += len(body)
            if not message.get("more_body", False):
                self._finished = True
                self._released.set()
        return have

    def read_into(self, buffer: bytearray) -> int:
        """Append the next piece of the body (about READ_CHUNK bytes) to `buffer`; 0 at its end.

        Called from a worker thread, which waits while the event loop appends the bytes (so
        the buffer is never used by both at once). Only one piece is in flight at a time, so
        memory stays flat however large the body is.
        """
        return asyncio.run_coroutine_threadsafe(self._read_into(buffer, READ_CHUNK), self._loop).result()


class StreamStowBodies:
    """ASGI middleware: hand STOW-RS request bodies to the view as a stream, unspooled.

    Wrap Django's ASGI application with it (config/asgi.py). Every other request, and every
    non-POST request, passes through untouched.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and BODY_SCOPE_KEY not in scope
            and _is_stow_path(scope)
        ):
            body = StreamedBody(receive)
            return await self.app({**scope, BODY_SCOPE_KEY: body}, body.app_receive, send)
        return await self.app(scope, receive, send)


def _is_stow_path(scope) -> bool:
    match = resolve_scope(scope)
    return match is not None and match.view_name in STOW_URL_NAMES


# -- views ------------------------------------------------------------------------------------


@dicomweb_view(write=True)
async def store(request):
    """POST /dicomweb/studies: store instances of any studies."""
    return await _store(request, study_uid=None)


@dicomweb_view(write=True)
async def store_study(request, study):
    """POST /dicomweb/studies/{study}: store instances that must belong to that study."""
    return await _store(request, study_uid=study)


@dataclass
class _Outcome:
    results: list[IngestResult] = field(default_factory=list)
    malformed: str = ""
    disconnected: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


async def _store(request, *, study_uid: str | None):
    content_type = ContentType(request.META.get("CONTENT_TYPE", ""))
    if content_type.media_type != "multipart/related":
        return _error(415, 'send multipart/related; type="application/dicom"')
    part_type = content_type.param("type")
    # Leniency, on purpose: PS3.18 requires the type parameter, but some clients omit it.
    if part_type and part_type.strip().lower() != "application/dicom":
        return _error(415, "only application/dicom parts are accepted (not metadata and bulk data)")
    try:
        boundary = boundary_of(content_type)
    except MalformedMultipart as exc:
        return _error(400, str(exc))
    if study_uid is not None and not (len(study_uid) <= 64 and UID(study_uid).is_valid):
        return _error(400, "the study in the URL is not a valid UID")
    if request.api_token is None:
        # SECURITY: a browser session is ambient authority; the dispatcher is csrf_exempt for
        # token clients, so session callers are CSRF-checked here.
        refusal = await sync_to_async(_csrf_refusal, thread_sensitive=False)(request)
        if refusal is not None:
            return refusal
    # thread_sensitive=False throughout: STOW requests must not queue on Django's one sync thread.
    organization, refusal = await sync_to_async(_target_organization, thread_sensitive=False)(request, study_uid)
    if refusal is not None:
        return refusal

    streamed = getattr(request, "scope", {}).get(BODY_SCOPE_KEY)
    read = streamed.read_into if streamed is not None else _request_reader(request)
    outcome = await sync_to_async(_ingest_body, thread_sensitive=False)(request, read, boundary, organization,
                                                                         study_uid)
    if outcome.disconnected:
        return HttpResponse(status=400)  # nobody is listening; Django drops it
    return _response(request, outcome, study_uid)


def _request_reader(request):
    """`read_into` over a request Django has read itself (WSGI, or no streaming middleware)."""

    def read_into(buffer: bytearray) -> int:
        piece = request.read(READ_CHUNK)
        buffer += piece
        return len(piece)

    return read_into


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _csrf_refusal(request) -> JsonResponse | None:
    middleware = CsrfViewMiddleware(lambda r: None)
    if "CSRF_COOKIE" not in request.META:
        middleware.process_request(request)
    if middleware.process_view(request, None, (), {}) is None:
        return None
    return _error(403, "CSRF check failed; send the X-CSRFToken header")


def _target_organization(request, study_uid: str | None) -> tuple[Organization | None, JsonResponse | None]:
    """The organisation to store into, or a refusal (audited)."""
    allowed = Organization.objects.filter(pk__in=organizations_where(request.user, Action.STUDY_IMPORT))
    slug = request.GET.get("organization")
    chosen = list(allowed.filter(slug=slug)[:1] if slug else allowed[:2])
    if len(chosen) == 1:
        return chosen[0], None
    if chosen:
        return None, _error(400, "you may store into several organisations; name one with ?organization=<slug>")
    record(action="dicomweb.stow", actor=request.user, request=request, object_type="study",
           object_id=study_uid or "", outcome=Outcome.DENIED, details={"reason": "no import right"})
    # SECURITY: the same answer whether the named organisation exists or not.
    return None, _error(403, "you may not store studies in this organisation")


def _ingest_body(request, read, boundary: bytes, organization, study_uid: str | None) -> _Outcome:
    """Parse the body part by part, ingest each, and audit the request; runs in a worker thread.

    The audit happens here, not in the view, because a client that disconnects makes Django
    cancel the view while this thread finishes what it started.
    """
    _drop_broken_connection()
    outcome = _Outcome()
    try:
        reader = MultipartReader(read, boundary)
        with IngestBatch(organization=organization, source="stow", expected_study_uid=study_uid) as batch:
            try:
                while (part := reader.next_part()) is not None:
                    if part.content_type not in ("", "application/dicom"):
                        part.discard()
                        settled = batch.add_result(IngestResult(
                            Status.REJECTED, reason="the part is not application/dicom", code="wrong_type",
                            failure_reason=CANNOT_UNDERSTAND))
                    else:
                        settled = batch.add(part)
                    outcome.results.extend(result for _, result in settled)
            except MalformedMultipart as exc:
                outcome.malformed = str(exc)
            except ClientDisconnected:
                outcome.disconnected = True
            # Parts that arrived whole before a malformed tail or a disconnect are kept: each
            # object stands on its own, and a client that re-sends gets them as duplicates.
            outcome.results.extend(result for _, result in batch.flush())
        if not outcome.results and not outcome.malformed and not outcome.disconnected:
            outcome.malformed = "the request has no parts"
        _audit(request, organization, study_uid, outcome)
    finally:
        _drop_broken_connection()
    return outcome


def _drop_broken_connection() -> None:
    """Close this thread's database connection if (and only if) it has failed.

    Ingest runs on the event loop's executor threads, which keep their connections from one
    request to the next, as the other API views' threads do: opening and closing an SQLite
    connection per STOW request (the close checkpoints the WAL) cost more than the request's
    own queries. A connection that saw an error is checked, as Django's own request-end
    handling does, and replaced if it no longer works.
    """
    if connection.connection is not None and connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


def _audit(request, organization, study_uid: str | None, outcome: _Outcome) -> None:
    stored = [r for r in outcome.results if r.status == Status.STORED]
    failed = [r for r in outcome.results if not r.ok]
    studies = sorted({r.study_instance_uid for r in outcome.results if r.ok and r.study_instance_uid})
    if outcome.disconnected:
        result = Outcome.ERROR
    elif any(r.ok for r in outcome.results):
        result = Outcome.SUCCESS
    else:
        result = Outcome.FAILURE
    token = request.api_token
    record(
        action="dicomweb.stow",
        actor=request.user,
        actor_type=ActorType.API_TOKEN if token is not None else None,
        request=request,
        organization=organization,
        object_type="study",
        object_id=study_uid or (studies[0] if len(studies) == 1 else ""),
        outcome=result,
        # PRIVACY: counts, UIDs and reason codes only; never names or other header values.
        details={
            "stored": len(stored),
            "duplicates": outcome.count(Status.DUPLICATE),
            "conflicts": outcome.count(Status.CONFLICT),
            "rejected": outcome.count(Status.REJECTED),
            "not_stored": outcome.count(Status.FAILED),
            "bytes": sum(r.size for r in stored),
            "study_uids": studies[:AUDIT_UID_LIMIT],
            "stored_sop_instance_uids": [r.sop_instance_uid for r in stored][:AUDIT_UID_LIMIT],
            "failed": [{"sop_instance_uid": r.sop_instance_uid, "code": r.code} for r in failed][:AUDIT_UID_LIMIT],
            "malformed": bool(outcome.malformed),
            "disconnected": outcome.disconnected,
            "api_token": token.pk if token is not None else None,
        },
    )


def _response(request, outcome: _Outcome, study_uid: str | None) -> HttpResponse:
    if outcome.malformed and not outcome.results:
        return _error(400, outcome.malformed)
    referenced, failed = [], []
    for result in outcome.results:
        item = {}
        if result.sop_class_uid:
            item["00081150"] = {"vr": "UI", "Value": [result.sop_class_uid]}
        if result.sop_instance_uid:
            item["00081155"] = {"vr": "UI", "Value": [result.sop_instance_uid]}
        if result.ok:
            item["00081190"] = {"vr": "UR", "Value": [_instance_url(request, result)]}
            referenced.append(item)
        else:
            item["00081197"] = {"vr": "US", "Value": [result.failure_reason or CANNOT_UNDERSTAND]}
            failed.append(item)
    studies = {r.study_instance_uid for r in outcome.results if r.ok}
    study = study_uid or (next(iter(studies)) if len(studies) == 1 else None)
    body: dict[str, dict] = {
        "00081190": {"vr": "UR", "Value": [request.build_absolute_uri(
            reverse("dicomweb:study", kwargs={"study": study}))]} if study and studies else {"vr": "UR"},
    }
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    storage_failed = not referenced and failed and all(r.status == Status.FAILED for r in outcome.results)
    if outcome.malformed:
        status = 400
    elif not failed:
        status = 200
    elif referenced:
        status = 202
    elif storage_failed:
        status = 503  # nothing wrong with the request: the server could not store it, try later
    else:
        status = 409
    response = HttpResponse(json.dumps(body), content_type=DICOM_JSON, status=status)
    if status == 503:
        response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER_SECONDS)
    warnings = []
    duplicates = outcome.count(Status.DUPLICATE)
    if duplicates:
        # Identical re-sends count as stored (the standard has no Warning Reason code for them).
        warnings.append(f'299 lightbox "{duplicates} of the instances were already stored with identical content"')
    if outcome.malformed:
        warnings.append(f'299 lightbox "the request body is malformed: {outcome.malformed}"')
    if warnings:
        response.headers["Warning"] = ", ".join(warnings)
    response.headers["Cache-Control"] = "no-store"
    return response


def _instance_url(request, result: IngestResult) -> str:
    return request.build_absolute_uri(reverse("dicomweb:wado-instance", kwargs={
        "study": result.study_instance_uid,
        "series": result.series_instance_uid,
        "instance": result.sop_instance_uid,
    }))
