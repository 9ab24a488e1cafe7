"""The viewer websocket: rendered frames for one study over one socket (docs/viewer-protocol.md).

Life of a socket: the guard in config/asgi.py has already refused wrong origins, anonymous and
password-only sessions; `connect` accepts, and the first message must be a `hello` with a valid
one-time ticket (tickets.py) within HELLO_SECONDS, else the socket is closed with 4403. The
ticket binds the socket to one study; every later lookup goes through the principal and that study.

Newest wins per viewport: each viewport has at most one render in flight and one pending request;
a request that arrives while another is pending replaces it (the older one is never rendered).
The pool's `supersedes` key (socket, viewport) additionally drops a queued job that a newer one
overtakes inside the pool. Handlers never await a render: Channels dispatches one message at a
time, so the renders run in per-viewport tasks and the receive loop stays free to see newer requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from audit.services import record
from viewer import overlay_info, tickets
from viewer.pool import ByteLRU, InfoJob, MeasureJob, PoolClosed, PoolError, PrefetchJob, RenderJob, Source, Superseded
from viewer.principal import principal_for_scope
from viewer.protocol import BadMessage, Cancel, Frame, Hello, Measure, Open, Ping, parse
from viewer.render import Ellipse, InvalidRenderParams, Rect, RenderError, RenderParams
from viewer.rendering import get_pool, source_for

logger = logging.getLogger("lightbox.viewer")

HELLO_SECONDS = 5.0
CLOSE_CODE = 4403
PREFETCH_NEIGHBOURS = 2
INTERACTIVE_QUALITY = 80
FINAL_FORMAT = "png"
MAX_CACHED_INSTANCES = 5000
# Encoded frames, shared by the sockets of this process (event-loop thread only). Keyed by the
# immutable blob and every render parameter (window, size, region, watermark, redactions...), and
# consulted only after the principal's lookup allowed the image, so a hit never skips a check.
# Scrolling back through a stack or looping a cine at one window re-sends frames without rendering.
# LIGHTBOX_VIEWER_FRAME_CACHE_BYTES bounds it (0 disables).
WATERMARK_REFRESH_SECONDS = 20.0  # the watermark names the time to the minute
_PREFETCH_MEMORY = 4096
_MEDIA_ENCODING = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}


@dataclass
class _Image:
    """One renderable instance of the socket's study, looked up once through the principal."""

    uid: str
    series_uid: str
    source: Source
    rows: int
    columns: int
    frames: int
    facts: dict
    instance: object
    position: int | None = None
    count: int | None = None
    redactions: tuple = ()
    info: dict | None = None  # InfoJob summary, fetched on first need


_FRAMES = ByteLRU(settings.LIGHTBOX_VIEWER_FRAME_CACHE_BYTES)


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    media_type: str
    width: int
    height: int


def _db(func):
    return database_sync_to_async(func)


class ViewerConsumer(AsyncWebsocketConsumer):
    """`/ws/viewer/`: hello, open, frame, cancel, measure, ping (see the protocol doc)."""

    async def connect(self):
        self.principal = None
        self.study = None
        self.study_facts: dict = {}
        self.series: dict[str, dict] = {}
        self.images: OrderedDict[str, _Image] = OrderedDict()
        self.pending: dict[int, Frame] = {}
        self.workers: dict[int, asyncio.Task] = {}
        self.tasks: set[asyncio.Task] = set()
        self.inflight: dict[int, object] = {}
        self.prefetched: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.counts = {"interactive": 0, "final": 0, "cached": 0, "dropped": 0, "errors": 0, "measurements": 0}
        self.opened_at = time.monotonic()
        self.groups_joined: list[str] = []
        self.closing = False
        self.session_hash = None
        await self.accept()
        self.hello_timer = asyncio.create_task(self._hello_deadline())

    async def dispatch(self, message):
        # Channels closes stale database connections (a thread hop) before every handler. Frame
        # requests arrive hundreds of times a second and touch the ORM only through
        # database_sync_to_async, which does that itself, so client messages skip the hop.
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    # -- life cycle --------------------------------------------------------------------------

    async def _hello_deadline(self):
        await asyncio.sleep(HELLO_SECONDS)
        if self.principal is None and not self.closing:
            await self._close_with("bad_ticket", message="no hello with a valid ticket in time")

    async def _close_with(self, reason: str, *, message: str | None = None):
        if self.closing:
            return
        self.closing = True
        payload = {"type": "closing", "reason": reason}
        if message:
            payload["message"] = message
        try:
            await self.send(text_data=json.dumps(payload))
        finally:
            await self.close(code=CLOSE_CODE)

    async def disconnect(self, code):
        self.closing = True
        timer = getattr(self, "hello_timer", None)
        if timer is not None:
            timer.cancel()
        for task in [*getattr(self, "workers", {}).values(), *getattr(self, "tasks", ())]:
            task.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "principal", None) is not None and self.study is not None:
            await _db(self._audit)(
                "viewer.session",
                "success",
                {**self.counts, "seconds": round(time.monotonic() - self.opened_at), "close_code": code},
            )

    def _audit(self, action: str, outcome: str, details: dict, organization=None):
        headers = dict(self.scope.get("headers") or [])
        client = self.scope.get("client") or (None, None)
        principal = self.principal
        user = self.scope.get("user")
        record(
            action=action,
            actor=principal.audit_actor if principal is not None else (user if getattr(user, "is_authenticated", False) else None),
            organization=organization if organization is not None else getattr(self.study, "organization_id", None),
            object_type="study",
            object_id=getattr(self.study, "study_instance_uid", ""),
            outcome=outcome,
            details={**(principal.audit_details if principal is not None else {}), **details},
            source_ip=client[0],
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
        )

    # -- messages ----------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        try:
            message = parse(text_data)
        except BadMessage as exc:
            if self.principal is None:
                await self._refuse_hello("the first message must be a hello with a ticket")
                return
            await self._error("bad_message", str(exc), seq=exc.seq)
            return
        if self.principal is None:
            if isinstance(message, Hello):
                await self._hello(message)
            else:
                await self._refuse_hello("the first message must be a hello with a ticket")
            return
        if isinstance(message, Frame):
            self._queue_frame(message)
        elif isinstance(message, Open):
            await self._open(message)
        elif isinstance(message, Cancel):
            self._cancel(message.viewport)
        elif isinstance(message, Measure):
            task = asyncio.create_task(self._measure(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(message, Ping):
            await self.send(text_data='{"type":"pong"}')
        else:  # a second hello
            await self._error("bad_message", "already said hello")

    async def _error(self, code: str, message: str, *, seq: int | None = None, viewport: int | None = None):
        self.counts["errors"] += 1
        payload: dict = {"type": "error", "code": code, "message": message}
        if seq is not None:
            payload["seq"] = seq
        if viewport is not None:
            payload["viewport"] = viewport
        await self.send(text_data=json.dumps(payload))

    async def _refuse_hello(self, message: str):
        await _db(self._audit)("viewer.ticket", "denied", {"reason": message[:80]})
        await self._close_with("bad_ticket", message=message)

    async def _hello(self, hello: Hello):
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None)
        ticket = await _db(tickets.redeem)(hello.ticket, session_key=session_key)
        if ticket is None:
            await self._refuse_hello("the ticket is invalid, used or expired")
            return
        principal = await principal_for_scope(self.scope)
        if principal is None or principal.kind != ticket.principal_kind:
            await self._refuse_hello("the ticket is not valid for this session")
            return
        study = await _db(self._load_study)(principal, ticket.study_uid)
        if study is None:
            await self._refuse_hello("the study is not available")
            return
        self.hello_timer.cancel()
        self.principal = principal
        self.study = study
        for group in principal.group_names:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        if session_key:
            from accounts.sessions import hash_session_key

            self.session_hash = hash_session_key(session_key)
        await self.send(text_data=json.dumps({"type": "ready", "study": study.study_instance_uid}))

    def _load_study(self, principal, study_uid: str):
        study = principal.studies().filter(study_instance_uid=study_uid).select_related("patient").first()
        if study is None:
            return None
        if hasattr(principal, "bind"):
            principal.bind(study)
        self.study_facts = overlay_info.study_facts(study, phi=principal.may_see_phi(study))
        self.watermark = principal.watermark_text()
        self.watermark_at = time.monotonic()
        self.phi = self.study_facts["phi"]
        return study

    # -- channel layer events ----------------------------------------------------------------

    async def viewer_revoke(self, event):
        """`{"type": "viewer.revoke", "reason": ...}` on one of the principal's groups."""
        await self._close_with("revoked", message=str(event.get("reason", ""))[:200] or None)

    async def session_event(self, event):
        """`{"type": "session.event", "event", "reason", "close", "session"?, "except_session"?}` (accounts/sessions.py)."""
        if not event.get("close"):
            return
        if event.get("session") and event["session"] != self.session_hash:
            return
        if event.get("except_session") and event["except_session"] == self.session_hash:
            return
        ended_by_time = event.get("event") == "expired" or event.get("reason") in ("idle", "absolute_lifetime", "expired")
        reason = "expired" if ended_by_time else "signed_out"
        await self._close_with(reason)

    # -- lookups (ORM in threads) ------------------------------------------------------------

    def _remember(self, image: _Image) -> None:
        self.images[image.uid] = image
        self.images.move_to_end(image.uid)
        while len(self.images) > MAX_CACHED_INSTANCES:
            self.images.popitem(last=False)

    def _image_for(self, instance, series_uid: str, position=None, count=None) -> _Image:
        redactions = () if self.phi else tuple(self.principal.redactions_for(instance))
        return _Image(
            uid=instance.sop_instance_uid,
            series_uid=series_uid,
            source=source_for(instance),
            rows=instance.rows,
            columns=instance.columns,
            frames=instance.number_of_frames,
            facts=overlay_info.instance_facts(instance),
            instance=instance,
            position=position,
            count=count,
            redactions=redactions,
        )

    def _series_facts(self, series) -> dict:
        return {"uid": series.series_instance_uid, "number": series.series_number,
                "description": series.series_description, "modality": series.modality}

    def _load_series(self, series_uid: str):
        instances = list(
            self.principal.instances()
            .filter(series__study=self.study, series__series_instance_uid=series_uid, rows__isnull=False)
            .select_related("series")
            .order_by("instance_number", "sop_instance_uid")
        )
        if not instances:
            return None
        facts = self._series_facts(instances[0].series)
        facts["instances"] = [i.sop_instance_uid for i in instances]
        images = [self._image_for(inst, series_uid, pos, len(instances)) for pos, inst in enumerate(instances)]
        return facts, images

    def _load_instance(self, uid: str):
        instance = (
            self.principal.instances()
            .filter(series__study=self.study, sop_instance_uid=uid, rows__isnull=False)
            .select_related("series")
            .first()
        )
        if instance is None:
            return None
        series_uid = instance.series.series_instance_uid
        if series_uid not in self.series:
            self.series[series_uid] = self._series_facts(instance.series)
        return self._image_for(instance, series_uid)

    async def _image(self, uid: str) -> _Image | None:
        image = self.images.get(uid)
        if image is None:
            image = await _db(self._load_instance)(uid)
            if image is not None:
                self._remember(image)
        return image

    async def _info(self, image: _Image) -> dict:
        if image.info is None:
            result = await get_pool().run(InfoJob(source=image.source))
            image.info = result.summary()
        return image.info

    # -- open --------------------------------------------------------------------------------

    async def _open(self, message: Open):
        loaded = await _db(self._load_series)(message.series)
        if loaded is None:
            await self._error("not_found", "no such series in this study", viewport=message.viewport)
            return
        facts, images = loaded
        self.series[message.series] = facts
        for image in images:
            self._remember(image)
        first = images[0]
        reply = {
            "type": "series",
            "viewport": message.viewport,
            "series": message.series,
            "modality": facts["modality"],
            "instances": [
                {"uid": i.uid, "frames": i.frames, "rows": i.rows, "columns": i.columns,
                 "number": i.facts["instance_number"], "position": i.facts["slice_location"]}
                for i in images
            ],
            "overlay": self._overlay(first, 0, None, None),
        }
        fps = overlay_info.frames_per_second(first.instance)
        if fps is not None:
            reply["fps"] = fps
        await self.send(text_data=json.dumps(reply))

    def _overlay(self, image: _Image, frame: int, window, zoom) -> dict:
        return overlay_info.compose(
            study=self.study_facts,
            series=self.series.get(image.series_uid, {}),
            instance=image.facts,
            position=image.position,
            count=image.count,
            frame=frame,
            window=window,
            zoom=zoom,
        )

    # -- frames ------------------------------------------------------------------------------

    def _queue_frame(self, request: Frame) -> None:
        viewport = request.viewport
        if viewport in self.pending:
            self.counts["dropped"] += 1  # SECURITY/perf: the older request is never rendered
        self.pending[viewport] = request
        if viewport not in self.workers:
            self.workers[viewport] = asyncio.create_task(self._viewport_loop(viewport))

    def _cancel(self, viewport: int) -> None:
        if self.pending.pop(viewport, None) is not None:
            self.counts["dropped"] += 1
        future = self.inflight.get(viewport)
        if future is not None and future.cancel():
            self.counts["dropped"] += 1

    async def _viewport_loop(self, viewport: int) -> None:
        try:
            while not self.closing:
                request = self.pending.pop(viewport, None)
                if request is None:
                    break
                try:
                    await self._serve(request)
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    self.counts["dropped"] += 1  # cancelled by a `cancel` message before it started
                except Exception as exc:  # noqa: BLE001 - one failed frame must not end the viewport
                    logger.warning("viewer frame failed: %s", type(exc).__name__)
                    if self.closing:
                        break
                    try:
                        await self._error("render_failed", "the image could not be rendered", seq=request.seq,
                                          viewport=request.viewport)
                    except Exception:  # noqa: BLE001 - the socket is gone; disconnect() cleans up
                        break
        finally:
            self.workers.pop(viewport, None)
            self.inflight.pop(viewport, None)

    async def _still_allowed(self) -> bool:
        principal = self.principal
        checker = getattr(principal, "ais_current", None)
        reason = await checker() if checker is not None else await _db(principal.is_current)()
        if reason is not None:
            await self._close_with(reason)
            return False
        return True

    async def _serve(self, request: Frame) -> None:
        # SECURITY: expiry, sign-out and revocation are re-checked before every render.
        if not await self._still_allowed():
            return
        if time.monotonic() - self.watermark_at > WATERMARK_REFRESH_SECONDS:
            self.watermark = await _db(self.principal.watermark_text)()
            self.watermark_at = time.monotonic()
        image = await self._image(request.instance)
        if image is None:
            await self._error("not_found", "no such image in this study", seq=request.seq, viewport=request.viewport)
            return
        if request.frame >= image.frames:
            await self._error("bad_message", f"frame: expected 0..{image.frames - 1}", seq=request.seq,
                              viewport=request.viewport)
            return
        final = request.tier == "final"
        window = request.window
        try:
            params = RenderParams(
                window_center=window.center if window else None,
                window_width=window.width if window else None,
                frame=request.frame,
                width=request.width,
                height=request.height,
                region=request.region,
                rotation=request.rotation,
                flip_h=request.flip_h,
                flip_v=request.flip_v,
                invert=request.invert,
                format=FINAL_FORMAT if final else "jpeg",
                quality=INTERACTIVE_QUALITY,
                watermark=self.watermark,
                redactions=image.redactions,
            )
        except InvalidRenderParams as exc:
            await self._error("bad_message", str(exc), seq=request.seq, viewport=request.viewport)
            return
        cache_key = (image.source.key, params.cache_key())
        result = _FRAMES.get(cache_key)
        if result is None:
            result = await self._render(request, image, params)
            if result is None:
                return
            _FRAMES.put(cache_key, result, len(result.data))
        else:
            self.counts["cached"] += 1
        if self.closing:
            return
        await self._send_frame(request, image, result)
        self._prefetch(image, request.frame, params)

    async def _render(self, request: Frame, image: _Image, params: RenderParams) -> _Encoded | None:
        """Render through the pool (newest wins per viewport); None after an error frame or a drop."""
        pool = get_pool()
        try:
            future = pool.submit(RenderJob(source=image.source, params=params),
                                 supersedes=(self.channel_name, request.viewport))
            self.inflight[request.viewport] = future
            result = await asyncio.wrap_future(future)
        except Superseded:
            self.counts["dropped"] += 1
            return None
        except InvalidRenderParams as exc:
            await self._error("bad_message", str(exc), seq=request.seq, viewport=request.viewport)
            return None
        except PoolClosed:
            await self._error("busy", "the render service is restarting; try again", seq=request.seq,
                              viewport=request.viewport)
            return None
        except (RenderError, PoolError) as exc:
            logger.warning("viewer render failed: %s", getattr(exc, "code", type(exc).__name__))
            await self._error("render_failed", "the image could not be rendered", seq=request.seq,
                              viewport=request.viewport)
            return None
        finally:
            self.inflight.pop(request.viewport, None)
        return _Encoded(result.data, result.media_type, result.width, result.height)

    async def _send_frame(self, request: Frame, image: _Image, result: _Encoded) -> None:
        final = request.tier == "final"
        window = request.window
        shown_window = await self._shown_window(image, window)
        header = {
            "seq": request.seq,
            "viewport": request.viewport,
            "instance": image.uid,
            "frame": request.frame,
            "encoding": _MEDIA_ENCODING.get(result.media_type, "jpeg"),
            "tier": request.tier,
            "width": result.width,
            "height": result.height,
            "window": {"center": shown_window[0], "width": shown_window[1]} if shown_window else None,
            "overlay": self._overlay(image, request.frame, shown_window, self._zoom(image, request, result)),
        }
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        await self.send(bytes_data=struct.pack(">I", len(encoded)) + encoded + result.data)
        self.counts["final" if final else "interactive"] += 1

    async def _shown_window(self, image: _Image, window) -> tuple[float, float] | None:
        if window is not None:
            return (window.center, window.width)
        facts = image.facts
        if facts.get("window_center") is not None and facts.get("window_width") is not None:
            return (facts["window_center"], facts["window_width"])
        try:
            info = await self._info(image)
        except (RenderError, PoolError):
            return None
        found = info.get("window") or {}
        if found.get("center") is None or found.get("width") is None:
            return None
        return (found["center"], found["width"])

    @staticmethod
    def _zoom(image: _Image, request: Frame, result) -> float | None:
        source_w = request.region[2] if request.region else image.columns
        source_h = request.region[3] if request.region else image.rows
        if request.rotation in (90, 270):
            source_w, source_h = source_h, source_w
        return round(result.width / source_w, 4) if source_w else None

    def _prefetch(self, image: _Image, frame: int, view: RenderParams) -> None:
        """Decode the neighbours (±2 slices of the stack, or frames of a multi-frame) into worker
        caches, as the current view needs them (a fit view of JPEG 2000 decodes only its level)."""
        targets: list[tuple[_Image, int]] = []
        if image.frames > 1:
            for delta in range(-PREFETCH_NEIGHBOURS, PREFETCH_NEIGHBOURS + 1):
                if delta and 0 <= frame + delta < image.frames:
                    targets.append((image, frame + delta))
        elif image.position is not None:
            uids = self.series.get(image.series_uid, {}).get("instances") or []
            for delta in range(-PREFETCH_NEIGHBOURS, PREFETCH_NEIGHBOURS + 1):
                index = image.position + delta
                if delta and 0 <= index < len(uids):
                    neighbour = self.images.get(uids[index])
                    if neighbour is not None:
                        targets.append((neighbour, 0))
        pool = get_pool()
        for target, target_frame in targets:
            key = (target.source.key, target_frame)
            if key in self.prefetched:
                continue
            self.prefetched[key] = None
            if len(self.prefetched) > _PREFETCH_MEMORY:
                self.prefetched.popitem(last=False)
            try:
                pool.submit(PrefetchJob(source=target.source, frames=(target_frame,), view=view))
            except PoolError:
                return

    # -- measurements ------------------------------------------------------------------------

    async def _measure(self, message: Measure) -> None:
        if not await self._still_allowed():
            return
        image = await self._image(message.instance)
        if image is None:
            await self._error("not_found", "no such image in this study", seq=message.seq)
            return
        if message.frame >= image.frames:
            await self._error("bad_message", f"frame: expected 0..{image.frames - 1}", seq=message.seq)
            return
        try:
            info = await self._info(image)
            reply = {"type": "measurement", "seq": message.seq, "instance": image.uid, "frame": message.frame,
                     "shape": message.shape}
            reply.update(await self._measurement(image, message, info))
        except InvalidRenderParams as exc:
            await self._error("bad_message", str(exc), seq=message.seq)
            return
        except (RenderError, PoolError) as exc:
            logger.warning("viewer measurement failed: %s", getattr(exc, "code", type(exc).__name__))
            await self._error("render_failed", "the image could not be measured", seq=message.seq)
            return
        self.counts["measurements"] += 1
        await self.send(text_data=json.dumps(reply))

    async def _measurement(self, image: _Image, message: Measure, info: dict) -> dict:
        spacing = info.get("pixel_spacing")
        source = info.get("pixel_spacing_source")
        points = message.points
        if message.shape == "line":
            (x0, y0), (x1, y1) = points
            pixels = math.hypot(x1 - x0, y1 - y0)
            length = math.hypot((x1 - x0) * spacing[1], (y1 - y0) * spacing[0]) if spacing else None
            return {"length_mm": _round(length), "length_px": _round(pixels), "spacing_source": source,
                    "pixel_spacing": spacing}
        if message.shape == "angle":
            (ax, ay), (vx, vy), (bx, by) = points
            sx, sy = (spacing[1], spacing[0]) if spacing else (1.0, 1.0)
            u = ((ax - vx) * sx, (ay - vy) * sy)
            v = ((bx - vx) * sx, (by - vy) * sy)
            norms = math.hypot(*u) * math.hypot(*v)
            if norms == 0:
                raise InvalidRenderParams("points: the angle's arms must have a length")
            cosine = max(-1.0, min(1.0, (u[0] * v[0] + u[1] * v[1]) / norms))
            return {"angle_deg": _round(math.degrees(math.acos(cosine))), "spacing_source": source}
        (x0, y0), (x1, y1) = points
        left, right = sorted((x0, x1))
        top, bottom = sorted((y0, y1))
        if message.shape == "rect":
            roi = Rect(int(math.floor(left)), int(math.floor(top)),
                       max(1, int(math.ceil(right)) - int(math.floor(left))),
                       max(1, int(math.ceil(bottom)) - int(math.floor(top))))
        else:
            if right - left <= 0 or bottom - top <= 0:
                raise InvalidRenderParams("points: the ellipse needs a width and a height")
            roi = Ellipse((left + right) / 2, (top + bottom) / 2, (right - left) / 2, (bottom - top) / 2)
        stats = await get_pool().run(MeasureJob(source=image.source, frame=message.frame, roi=roi))
        out = {k: (_round(v) if isinstance(v, float) else v) for k, v in stats.items()}
        out.setdefault("spacing_source", source)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
