"""Wire format between the pool (parent) and its workers.

Parent -> worker: pickled tuples (the parent is trusted): ``("job", id, job)``,
``("cancel", id)``, ``("stats", id)``, ``("stop",)``.

Worker -> parent: never pickle. # SECURITY: a worker parses hostile files with third-party
C decoders; if one were exploited, unpickling its replies would hand the web server to the
attacker. Replies are ``u32 header length + JSON header + raw payload`` and the parent builds
results only from whitelisted types and error classes.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import fields
from typing import Any

from viewer.render.errors import (
    CorruptPixelData,
    ImageTooLarge,
    InvalidRenderParams,
    RenderError,
    UnsupportedTransferSyntax,
)
from viewer.render.params import ImageInfo, Lut, Window

from .errors import (
    JobTimeout,
    PoolClosed,
    PoolError,
    RenderFailed,
    SourceUnavailable,
    Superseded,
    WorkerCrashed,
    WorkerMemoryExceeded,
)
from .jobs import InfoResult, RenderResult

__all__ = [
    "ProtocolError",
    "Reply",
    "decode_reply",
    "encode_error",
    "encode_init_failed",
    "encode_ready",
    "encode_result",
    "encode_stats",
]

_HEADER = struct.Struct("<I")
_MAX_HEADER = 4 << 20
_MAX_MESSAGE = 300
_ERROR_CLASSES: dict[str, type[RenderError]] = {
    cls.__name__: cls
    for cls in (
        RenderError,
        UnsupportedTransferSyntax,
        CorruptPixelData,
        ImageTooLarge,
        InvalidRenderParams,
        PoolError,
        WorkerCrashed,
        JobTimeout,
        Superseded,
        PoolClosed,
        SourceUnavailable,
        RenderFailed,
        WorkerMemoryExceeded,
    )
}


class ProtocolError(Exception):
    """A worker reply that does not parse; the parent treats the worker as crashed."""


class Reply:
    """A decoded worker message: ``kind`` ('result', 'error', 'ready', 'init_failed'), id, value."""

    __slots__ = ("job_id", "kind", "value")

    def __init__(self, kind: str, job_id: int, value: Any) -> None:
        self.kind, self.job_id, self.value = kind, job_id, value


def _pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    # NaN stays representable: a header may hold a "NaN" DS value
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_HEADER.pack(len(head)), head, payload))


# -- worker side ---------------------------------------------------------------------------


def _lut_json(lut: Lut) -> dict[str, Any]:
    return {
        "first_mapped": lut.first_mapped,
        "bits": lut.bits,
        "data": base64.b64encode(lut.data).decode(),
        "explanation": lut.explanation,
        "lut_type": lut.lut_type,
    }


def _info_json(info: ImageInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(ImageInfo):
        value = getattr(info, f.name)
        if f.name == "modality_lut":
            value = None if value is None else _lut_json(value)
        elif f.name == "voi_luts":
            value = [_lut_json(lut) for lut in value]
        elif f.name == "palette":
            value = None if value is None else base64.b64encode(value).decode()
        out[f.name] = value
    return out


def encode_result(job_id: int, result: Any) -> bytes:
    """Serialise a job's result (RenderResult, InfoResult, dict or int) for the parent."""
    if isinstance(result, RenderResult):
        header = {
            "id": job_id,
            "kind": "render",
            "media_type": result.media_type,
            "width": result.width,
            "height": result.height,
            "cached": result.cached,
            "timings_ms": result.timings_ms,
        }
        return _pack(header, result.data)
    if isinstance(result, InfoResult):
        window = result.default_window
        return _pack(
            {
                "id": job_id,
                "kind": "info",
                "info": _info_json(result.info),
                "window": [window.center, window.width, window.function, window.lut_index],
            }
        )
    # measure dicts (floats/None/str) and prefetch counts
    return _pack({"id": job_id, "kind": "value", "value": result})


def encode_error(job_id: int, error: RenderError, detail: str = "") -> bytes:
    """Serialise an error: class name, code and its (PHI-free) message; detail for logs."""
    return _pack(
        {
            "id": job_id,
            "kind": "error",
            "error": type(error).__name__,
            "code": error.code,
            "message": str(error)[:_MAX_MESSAGE],
            "detail": detail[-4000:],
        }
    )


def encode_stats(job_id: int, stats: dict[str, Any]) -> bytes:
    """Serialise the worker's cache statistics."""
    return _pack({"id": job_id, "kind": "value", "value": stats})


def encode_ready(pid: int) -> bytes:
    """The first message of a worker that started and imported its opener."""
    return _pack({"id": -1, "kind": "ready", "pid": pid})


def encode_init_failed(message: str, detail: str = "") -> bytes:
    """The only message of a worker whose opener or init hook failed."""
    return _pack({"id": -1, "kind": "init_failed", "message": message[:_MAX_MESSAGE], "detail": detail[-4000:]})


# -- parent side ---------------------------------------------------------------------------


def _lut_from(data: dict[str, Any]) -> Lut:
    return Lut(
        first_mapped=int(data["first_mapped"]),
        bits=int(data["bits"]),
        data=base64.b64decode(data["data"]),
        explanation=str(data["explanation"]),
        lut_type=str(data["lut_type"]),
    )


def _info_from(data: dict[str, Any]) -> ImageInfo:
    kwargs: dict[str, Any] = {}
    for f in fields(ImageInfo):
        value = data[f.name]
        if f.name == "modality_lut":
            value = None if value is None else _lut_from(value)
        elif f.name == "voi_luts":
            value = tuple(_lut_from(item) for item in value)
        elif f.name == "palette":
            value = None if value is None else base64.b64decode(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return ImageInfo(**kwargs)


def _error_from(header: dict[str, Any]) -> RenderError:
    cls = _ERROR_CLASSES.get(str(header.get("error")), RenderFailed)
    error = cls(str(header.get("message", ""))[:_MAX_MESSAGE])
    code = header.get("code")
    if cls is RenderError and isinstance(code, str) and code.isidentifier() and len(code) <= 40:
        error.code = code  # a RenderError subclass the parent does not know by name
    error.detail = str(header.get("detail", ""))  # type: ignore[attr-defined]
    return error


def decode_reply(message: bytes) -> Reply:
    """Parse one worker message.

    Raises
    ------
    ProtocolError
        On anything malformed.
    """
    try:
        view = memoryview(message)
        (length,) = _HEADER.unpack_from(view)
        if length > _MAX_HEADER or 4 + length > len(view):
            raise ProtocolError("header length out of range")
        header = json.loads(bytes(view[4 : 4 + length]))
        kind = header["kind"]
        job_id = int(header["id"])
        if kind == "render":
            timings = {str(k): float(v) for k, v in dict(header["timings_ms"]).items()}
            result = RenderResult(
                bytes(view[4 + length :]),
                str(header["media_type"]),
                int(header["width"]),
                int(header["height"]),
                bool(header["cached"]),
                timings,
            )
            return Reply("result", job_id, result)
        if kind == "info":
            center, width, function, lut_index = header["window"]
            window = Window(float(center), float(width), str(function), None if lut_index is None else int(lut_index))
            return Reply("result", job_id, InfoResult(_info_from(header["info"]), window))
        if kind == "value":
            return Reply("result", job_id, header["value"])
        if kind == "error":
            return Reply("error", job_id, _error_from(header))
        if kind == "ready":
            return Reply("ready", job_id, int(header["pid"]))
        if kind == "init_failed":
            error = PoolError(str(header["message"])[:_MAX_MESSAGE])
            error.detail = str(header.get("detail", ""))
            return Reply("init_failed", job_id, error)
    except ProtocolError:
        raise
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise ProtocolError(f"malformed worker reply ({type(exc).__name__})") from None
    raise ProtocolError("unknown reply kind")
