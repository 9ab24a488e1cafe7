"""The viewer websocket's client messages as pydantic models (docs/viewer-protocol.md section 3).

Every message is validated strictly: unknown fields, unknown types and wrong types are refused
(`extra="forbid"`, strict mode), so the consumer never acts on JSON it did not expect.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

__all__ = ["MAX_MESSAGE_BYTES", "MAX_SIDE", "BadMessage", "parse"]

MAX_SIDE = 4096
MAX_MESSAGE_BYTES = 16 * 1024
UID = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9.]+$")]
Viewport = Annotated[int, Field(ge=0, le=3)]
Seq = Annotated[int, Field(ge=0, le=2**53)]
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Hello(_Message):
    type: Literal["hello"]
    ticket: Annotated[str, Field(min_length=1, max_length=200)]


class Open(_Message):
    type: Literal["open"]
    viewport: Viewport
    series: UID


class WindowSpec(_Message):
    center: Annotated[float, Field(ge=-1e7, le=1e7, allow_inf_nan=False)]
    width: Annotated[float, Field(ge=1, le=1e7, allow_inf_nan=False)]


class Frame(_Message):
    type: Literal["frame"]
    viewport: Viewport
    seq: Seq
    instance: UID
    frame: Annotated[int, Field(ge=0, le=100_000)] = 0
    width: Annotated[int, Field(ge=1, le=MAX_SIDE)]
    height: Annotated[int, Field(ge=1, le=MAX_SIDE)]
    window: WindowSpec | None = None
    region: tuple[int, int, int, int] | None = None
    rotation: Literal[0, 90, 180, 270] = 0
    flip_h: bool = False
    flip_v: bool = False
    invert: bool = False
    tier: Literal["interactive", "final"] = "interactive"

    @model_validator(mode="after")
    def _region_is_a_rectangle(self):
        if self.region is not None:
            x, y, w, h = self.region
            if x < 0 or y < 0 or w < 1 or h < 1 or max(self.region) > 65535:
                raise ValueError("region: expected [x, y, w, h] with x, y >= 0 and w, h in 1..65535")
        return self


class Cancel(_Message):
    type: Literal["cancel"]
    viewport: Viewport


_POINTS = {"rect": 2, "ellipse": 2, "line": 2, "angle": 3}


class Measure(_Message):
    type: Literal["measure"]
    seq: Seq
    instance: UID
    frame: Annotated[int, Field(ge=0, le=100_000)] = 0
    shape: Literal["rect", "ellipse", "line", "angle"]
    points: list[tuple[Coordinate, Coordinate]]

    @model_validator(mode="after")
    def _point_count(self):
        expected = _POINTS[self.shape]
        if len(self.points) != expected:
            raise ValueError(f"points: expected {expected} [x, y] pairs for {self.shape}, got {len(self.points)}")
        return self


class Ping(_Message):
    type: Literal["ping"]


Message = Annotated[Hello | Open | Frame | Cancel | Measure | Ping, Field(discriminator="type")]
_ADAPTER = TypeAdapter(Message)


class BadMessage(ValueError):
    """A client message that is not valid JSON or does not match the schema; `seq` when one was readable."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)[:300]


def parse(text: str | None) -> Hello | Open | Frame | Cancel | Measure | Ping:
    """Validate one text frame; raise BadMessage with a short reason (no echo of the input)."""
    if text is None:
        raise BadMessage("expected a JSON text message, got binary")
    if len(text) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large (at most {MAX_MESSAGE_BYTES} bytes)")
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        try:
            data = json.loads(text)
        except ValueError:
            raise BadMessage("expected JSON") from None
        if not isinstance(data, dict):
            raise BadMessage("expected a JSON object") from None
        seq = data.get("seq")
        raise BadMessage(_describe(exc), seq if type(seq) is int else None) from None
