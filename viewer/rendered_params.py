"""Query parameters of WADO-RS /rendered and /thumbnail (PS3.18 8.3.5) to RenderParams."""

from __future__ import annotations

import math

from viewer.render import InvalidRenderParams, RenderParams

MEDIA_TYPES = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}
DEFAULT_THUMBNAIL = 128


class BadRenderQuery(ValueError):
    """A /rendered query the server cannot honour; the message names the parameter."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status


def _numbers(raw: str, name: str) -> list[float]:
    try:
        values = [float(part) for part in raw.split(",")]
    except ValueError:
        raise BadRenderQuery(f"{name}: expected comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise BadRenderQuery(f"{name}: expected finite numbers")
    return values


def parse_window(raw: str | None) -> dict:
    """`window=center,width[,function]` (PS3.18 8.3.5.1.4)."""
    if not raw:
        return {}
    parts = raw.split(",")
    if len(parts) not in (2, 3):
        raise BadRenderQuery("window: expected center,width[,function]")
    center, width = _numbers(",".join(parts[:2]), "window")
    function = parts[2].strip().upper() if len(parts) == 3 else None
    return {"window_center": center, "window_width": width, "voi_function": function}


def parse_viewport(raw: str | None, *, rows: int, columns: int) -> dict:
    """`viewport=vw,vh[,sx,sy,sw,sh]` (PS3.18 8.3.5.1.3): output size and source region."""
    if not raw:
        return {}
    values = _numbers(raw, "viewport")
    if len(values) not in (2, 6):
        raise BadRenderQuery("viewport: expected vw,vh or vw,vh,sx,sy,sw,sh")
    if not all(v == int(v) for v in values):
        raise BadRenderQuery("viewport: expected whole numbers")
    vw, vh = int(values[0]), int(values[1])
    result: dict = {"width": vw, "height": vh}
    if len(values) == 6:
        sx, sy, sw, sh = (int(v) for v in values[2:])
        # A negative sw/sh means "flipped" in the standard; we express that with flips instead.
        flip_h, flip_v = sw < 0, sh < 0
        sw, sh = abs(sw), abs(sh)
        if sw == 0 or sh == 0 or sx < 0 or sy < 0 or sx + sw > columns or sy + sh > rows:
            raise BadRenderQuery(f"viewport: source region must lie inside the {columns}x{rows} image")
        result.update(region=(sx, sy, sw, sh), flip_h=flip_h, flip_v=flip_v)
    return result


def parse_quality(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        quality = int(raw)
    except ValueError:
        raise BadRenderQuery("quality: expected an integer 1-100") from None
    if not 1 <= quality <= 100:
        raise BadRenderQuery("quality: expected an integer 1-100")
    return {"quality": quality}


def negotiate_format(accept: str | None) -> tuple[str, str]:
    """Pick the output format from the Accept header; JPEG when the client accepts anything."""
    if not accept or accept.strip() in ("*/*", "image/*"):
        return "image/jpeg", "jpeg"
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        weight = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        ranked.append((-weight, position, media.lower()))
    for weight, _, media in sorted(ranked):
        if weight == 0:
            continue
        if media in MEDIA_TYPES:
            return media, MEDIA_TYPES[media]
        if media in ("*/*", "image/*"):
            return "image/jpeg", "jpeg"
    raise BadRenderQuery("Accept: only image/jpeg, image/png and image/webp are rendered", status=406)


def render_params(query, accept: str | None, *, rows: int, columns: int, frame: int = 0, thumbnail: bool = False,
                  watermark: str | None = None, redactions: tuple = ()) -> tuple[RenderParams, str]:
    """Build RenderParams and the response media type from a request's query and Accept header."""
    allowed = {"window", "viewport", "quality", "annotation", "charset", "iccprofile"}
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise BadRenderQuery(f"unsupported query parameter: {unknown[0][:40]}")
    media_type, fmt = negotiate_format(accept)
    options = {**parse_window(query.get("window")), **parse_quality(query.get("quality"))}
    options.update(parse_viewport(query.get("viewport"), rows=rows, columns=columns))
    if thumbnail and "width" not in options:
        options.update(width=DEFAULT_THUMBNAIL, height=DEFAULT_THUMBNAIL)
    try:
        params = RenderParams(frame=frame, format=fmt, watermark=watermark, redactions=redactions, **options)
    except InvalidRenderParams as exc:
        raise BadRenderQuery(str(exc)) from None
    return params, media_type
