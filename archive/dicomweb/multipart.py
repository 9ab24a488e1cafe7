"""multipart/related responses (RFC 2387, PS3.18 8.6.1.2) and the Accept header they answer.

The writer only frames parts; what goes in them (original bytes, transcoded objects, frames)
is wado.py's business. STOW-RS parses request bodies elsewhere.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

CRLF = b"\r\n"


def new_boundary() -> str:
    """A random boundary; 128 bits make a collision with part content negligible."""
    return secrets.token_hex(16)


def content_type(boundary: str, part_type: str) -> str:
    """The response Content-Type: `multipart/related; type="..."; boundary=...`."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def part_head(boundary: str, part_content_type: str, *, first: bool) -> bytes:
    """The delimiter and headers opening one part (the previous part's CRLF included)."""
    opening = b"" if first else CRLF
    return opening + f"--{boundary}\r\nContent-Type: {part_content_type}\r\n\r\n".encode("ascii")


def closing(boundary: str, *, empty: bool = False) -> bytes:
    """The close-delimiter that ends the body."""
    return (b"" if empty else CRLF) + f"--{boundary}--\r\n".encode("ascii")


async def stream(boundary: str, parts: AsyncIterator[tuple[str, AsyncIterator[bytes]]]) -> AsyncIterator[bytes]:
    """Frame `(content type, chunks)` parts into one multipart/related body.

    The part generators are closed explicitly (aclosing), so a client that disconnects mid-body
    has every blob reader closed at once, not whenever the garbage collector gets to it.
    """
    first = True
    async with aclosing(parts):
        async for part_content_type, chunks in parts:
            yield part_head(boundary, part_content_type, first=first)
            first = False
            async with aclosing(chunks):
                async for chunk in chunks:
                    if chunk:
                        yield chunk
    yield closing(boundary, empty=first)


# --- Accept --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: `type/subtype; params` with its quality."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def is_multipart(self) -> bool:
        return self.media_type in ("multipart/related", "multipart/*")

    @property
    def inner_type(self) -> str:
        """For multipart/related, the `type` parameter ("*/*" when absent); else the range itself."""
        if self.is_multipart:
            return self.params.get("type", "*/*").lower()
        return self.media_type

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside double quotes."""
    pieces, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header into ranges, best first (stable for equal quality); q=0 dropped.

    A missing or empty header means `*/*` (RFC 9110 12.5.1). Malformed entries are ignored
    rather than failing the request.
    """
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = []
    for entry in _split(header[:4096], ","):
        pieces = [p.strip() for p in _split(entry, ";")]
        media_type = pieces[0].lower()
        if media_type.count("/") != 1:
            continue
        params: dict[str, str] = {}
        quality = 1.0
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name:
                params[name] = value
        if quality > 0:
            ranges.append(MediaRange(media_type, params, quality))
    ranges.sort(key=lambda r: -r.quality)
    return ranges


def type_matches(pattern: str, media_type: str) -> bool:
    """Whether a media range pattern (`*/*`, `image/*`, `image/jls`) covers `media_type`."""
    if pattern == "*/*":
        return True
    major, _, minor = pattern.partition("/")
    wanted_major, _, wanted_minor = media_type.partition("/")
    return major == wanted_major and minor in ("*", wanted_minor)


def accepts_json(header: str | None) -> bool:
    """Whether a client accepts `application/dicom+json` (QIDO and metadata responses)."""
    for media_range in parse_accept(header):
        if media_range.is_multipart:
            continue
        if any(type_matches(media_range.media_type, t) for t in ("application/dicom+json", "application/json")):
            return True
    return False
