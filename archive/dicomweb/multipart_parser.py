"""An incremental pull parser for `multipart/related` request bodies (RFC 2046 5.1, RFC 2387).

STOW-RS (PS3.18 10.5) sends one DICOM object per part. Bodies can be gigabytes, so nothing here
holds more than what one `Part.read(size)` asks for plus one chunk of the body: a part's content
is handed out through `Part.read` as it arrives. Django-free: it pulls bytes from any
`read_into(buffer) -> int` callable, which appends the next piece of the body to the parser's
buffer (one copy, straight from the network's chunks) and returns its length (0 at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message

# Limits for the bytes around the parts; the parts themselves are bounded by the caller.
MAX_PREAMBLE_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_EPILOGUE_BYTES = 64 * 1024
# RFC 2046 5.1.1: 1 to 70 characters from a restricted set.
_BOUNDARY_CHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


class MalformedMultipart(ValueError):
    """The body does not follow the multipart syntax; the message is safe to show."""


class ContentType:
    """A parsed Content-Type header value: the lowercased media type and its parameters."""

    def __init__(self, value: str) -> None:
        message = Message()
        message["content-type"] = value or ""
        # email's parser is lenient about quoting and case, like most HTTP servers.
        self.media_type = message.get_content_type() if value else ""
        self.params = {k.lower(): v for k, v in (message.get_params() or [])[1:]}

    def param(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if isinstance(value, str) else None


def boundary_of(content_type: ContentType) -> bytes:
    """Return the boundary parameter as bytes; MalformedMultipart if missing or invalid."""
    boundary = content_type.param("boundary")
    if not boundary:
        raise MalformedMultipart("the Content-Type has no boundary parameter")
    raw = boundary.encode("ascii", "replace")
    if len(raw) > 70 or not set(raw) <= _BOUNDARY_CHARS or raw.endswith(b" "):
        raise MalformedMultipart("the boundary parameter is not a valid RFC 2046 boundary")
    return raw


class Part:
    """One body part: its headers (lowercased names) and a file-like `read` over its content."""

    def __init__(self, reader: MultipartReader, headers: dict[str, str]) -> None:
        self._reader = reader
        self.headers = headers

    @property
    def content_type(self) -> str:
        return ContentType(self.headers.get("content-type", "")).media_type

    def read(self, size: int = -1) -> bytes:
        """Return up to `size` bytes of the part's content (all of it for -1); b"" at its end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self._reader._read_content(1 << 20), b""))
        return self._reader._read_content(size) if size else b""

    def readable(self) -> bool:
        return True

    def discard(self) -> None:
        """Skip the rest of this part's content."""
        while self._reader._read_content(1 << 20):
            pass


class MultipartReader:
    """Pull the parts of a multipart body one at a time from `read`, in constant memory.

    Use: `while (part := reader.next_part()) is not None: ... part.read(n) ...`. A part must be
    read (or left to be skipped) before asking for the next one. Raises MalformedMultipart on
    syntax errors, including a body that ends before the closing delimiter.
    """

    def __init__(self, read_into: Callable[[bytearray], int], boundary: bytes) -> None:
        self._read_into = read_into
        self._delimiter = b"\r\n--" + boundary
        # RFC 2046: the first delimiter may start the body without the CRLF that belongs to it,
        # so pretend one came first; a preamble before it is then skipped the same way.
        self._buf = bytearray(b"\r\n")
        self._pos = 0
        self._scanned = 0  # no delimiter starts in buf[pos:scanned]
        self._eof = False
        self._in_part = False
        self._done = False
        self._started = False
        self._current: Part | None = None
        self.parts = 0

    # -- public ------------------------------------------------------------------------

    def next_part(self) -> Part | None:
        """Return the next part (its headers read), or None after the closing delimiter."""
        if self._done:
            return None
        if self._in_part:
            while self._read_content(1 << 20):
                pass
        if not self._started:
            self._skip_preamble()
            self._started = True
        if self._after_delimiter():
            self._done = True
            self._skip_epilogue()
            return None
        headers = self._read_headers()
        self._in_part = True
        self.parts += 1
        self._current = Part(self, headers)
        return self._current

    # -- body content ---------------------------------------------------------------------

    def _read_content(self, size: int) -> bytes:
        if not self._in_part:
            return b""
        delimiter = self._delimiter
        while True:
            start = max(self._pos, self._scanned)
            found = self._buf.find(delimiter, start)
            if found >= 0:
                available = found - self._pos
                if available == 0:
                    self._in_part = False
                    return b""
                take = min(size, available)
                return self._take(take)
            # A delimiter may straddle the end of the buffer: keep its possible start back.
            safe = len(self._buf) - (len(delimiter) - 1)
            self._scanned = max(self._scanned, safe)
            # Gather up to `size` bytes before copying them out, so a part arriving in many
            # chunks is handed over in one piece (the buffer stays within size + one chunk).
            if safe - self._pos >= size:
                return self._take(size)
            if not self._fill():
                raise MalformedMultipart("the body ended inside a part (no closing delimiter)")

    def _take(self, count: int) -> bytes:
        with memoryview(self._buf) as view:
            data = bytes(view[self._pos : self._pos + count])
        self._pos += count
        return data

    # -- framing ------------------------------------------------------------------------

    def _skip_preamble(self) -> None:
        while True:
            found = self._buf.find(self._delimiter, self._pos)
            if found >= 0:
                self._pos = found
                return
            if len(self._buf) > MAX_PREAMBLE_BYTES:
                raise MalformedMultipart("no multipart boundary found at the start of the body")
            if not self._fill():
                raise MalformedMultipart("no multipart boundary found in the body")

    def _after_delimiter(self) -> bool:
        """Consume a delimiter line at pos; True if it is the closing one (`--` after it)."""
        self._need(len(self._delimiter) + 2)
        self._pos += len(self._delimiter)
        if self._buf[self._pos : self._pos + 2] == b"--":
            self._pos += 2
            return True
        # Transport padding (linear white space) may follow the boundary before the CRLF.
        for _ in range(1024):
            self._need(2)
            if self._buf[self._pos : self._pos + 2] == b"\r\n":
                self._pos += 2
                self._scanned = self._pos
                return False
            if self._buf[self._pos] not in b" \t":
                break
            self._pos += 1
        raise MalformedMultipart("a multipart boundary line is not followed by CRLF")

    def _read_headers(self) -> dict[str, str]:
        self._need(2)
        if self._buf[self._pos : self._pos + 2] == b"\r\n":
            self._pos += 2
            return {}
        while True:
            end = self._buf.find(b"\r\n\r\n", self._pos)
            if end >= 0:
                break
            if len(self._buf) - self._pos > MAX_HEADER_BYTES:
                raise MalformedMultipart("the headers of a part are too long")
            if not self._fill():
                raise MalformedMultipart("the body ended inside the headers of a part")
        if end - self._pos > MAX_HEADER_BYTES:
            raise MalformedMultipart("the headers of a part are too long")
        block = bytes(self._buf[self._pos : end])
        self._pos = end + 4
        self._scanned = self._pos
        headers: dict[str, str] = {}
        for line in block.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon or not name.strip() or line[:1] in (b" ", b"\t"):
                raise MalformedMultipart("a part header line is malformed")
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        return headers

    def _skip_epilogue(self) -> None:
        # Read (and ignore) what follows the closing delimiter, so the connection can be reused.
        skipped = len(self._buf) - self._pos
        while skipped <= MAX_EPILOGUE_BYTES and self._fill():
            skipped = len(self._buf) - self._pos

    # -- buffer -------------------------------------------------------------------------

    def _need(self, count: int) -> None:
        while len(self._buf) - self._pos < count:
            if not self._fill():
                raise MalformedMultipart("the body ended inside a multipart boundary")

    def _fill(self) -> bool:
        if self._eof:
            return False
        # Drop what was consumed before growing, so the buffer holds only unread bytes.
        if self._pos:
            del self._buf[: self._pos]
            self._scanned = max(0, self._scanned - self._pos)
            self._pos = 0
        if not self._read_into(self._buf):
            self._eof = True
            return False
        return True
