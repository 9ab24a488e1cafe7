"""The on-disk format of one encrypted blob (format version 1).

A blob is a header followed by one or more chunk records::

    offset  size  field
    0       4     magic b"LBXB"
    4       1     format version (1)
    5       1     cipher suite (1 = AES-256-GCM, 12-byte random nonce, 16-byte tag)
    6       4     chunk size C: plaintext bytes in every chunk but the last (u32, big endian)
    10      16    object id (random; its hex form is the blob id, the storage name)
    26      1     length n of the DEK id (1..128)
    27      n     DEK id (ASCII)
    27+n    ...   chunk records

    chunk record i = nonce (12 random bytes) || ciphertext || GCM tag (16 bytes)
    associated data of chunk i = header bytes || i (u64, big endian) || last (1 byte, 0 or 1)

Every chunk but the last holds exactly C plaintext bytes; the last holds 0..C and is the
only one sealed with last=1. An empty object still has one (empty, last) chunk, so a
blob can never be truncated to zero chunks. The plaintext size and the position of any
byte therefore follow from the blob size alone, which is what lets range reads fetch and
decrypt only the chunks they touch.

Because the whole header is associated data of every chunk, a changed header field
(chunk size, object id, DEK id, version) fails authentication of the first chunk read.
The index stops reordering, the last flag stops truncation at a chunk boundary, and the
object id stops chunks being swapped between objects. The store also checks that the
object id in the header matches the name the blob was stored under, which stops whole
files being swapped between names.

Nonces are random: with 96-bit nonces the collision risk stays below 2^-32 up to 2^32
chunks (4 PiB at 1 MiB chunks) per DEK, far beyond one organisation's DEK lifetime.
"""

from __future__ import annotations

import re
import secrets
import struct
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import IntegrityError

MAGIC = b"LBXB"
VERSION = 1
SUITE_AES_256_GCM = 1
NONCE_SIZE = 12
TAG_SIZE = 16
CHUNK_OVERHEAD = NONCE_SIZE + TAG_SIZE
OBJECT_ID_SIZE = 16
KEY_SIZE = 32

DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
# SECURITY: the chunk size is read before anything is authenticated; the bound keeps a
# forged header from making a reader allocate an arbitrary buffer.
MAX_CHUNK_SIZE = 64 << 20

MAX_DEK_ID_LENGTH = 128
DEK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")

_FIXED = struct.Struct(">4sBBI16sB")
_CHUNK_TRAILER = struct.Struct(">QB")

# cryptography >= 44 can encrypt into and decrypt into caller buffers; older releases
# return new bytes, which costs one allocation per chunk but is otherwise identical.
_HAS_INTO = hasattr(AESGCM, "encrypt_into") and hasattr(AESGCM, "decrypt_into")


def validate_chunk_size(chunk_size: int) -> int:
    """Return chunk_size if it is within the supported bounds, else raise ValueError."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}, got {chunk_size}")
    return chunk_size


def validate_dek_id(dek_id: str) -> str:
    """Return dek_id if it is a well-formed DEK id, else raise ValueError."""
    if not isinstance(dek_id, str) or not DEK_ID_RE.fullmatch(dek_id):
        raise ValueError(f"DEK id must match {DEK_ID_RE.pattern!r}")
    return dek_id


def new_aead(key: bytes) -> AESGCM:
    """Return an AES-256-GCM cipher for a 32-byte key."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError("a DEK must be 32 bytes (AES-256)")
    return AESGCM(bytes(key))


@dataclass(frozen=True)
class Header:
    """A parsed blob header; ``raw`` is its exact encoding, bound into every chunk."""

    chunk_size: int
    object_id: bytes
    dek_id: str
    raw: bytes

    @property
    def blob_id(self) -> str:
        """The storage name of the blob this header belongs to."""
        return self.object_id.hex()


def new_header(*, chunk_size: int, dek_id: str, object_id: bytes | None = None) -> Header:
    """Build the header of a new blob with a fresh random object id."""
    validate_chunk_size(chunk_size)
    validate_dek_id(dek_id)
    if object_id is None:
        object_id = secrets.token_bytes(OBJECT_ID_SIZE)
    if len(object_id) != OBJECT_ID_SIZE:
        raise ValueError("object id must be 16 bytes")
    dek_bytes = dek_id.encode("ascii")
    raw = _FIXED.pack(MAGIC, VERSION, SUITE_AES_256_GCM, chunk_size, object_id, len(dek_bytes)) + dek_bytes
    return Header(chunk_size=chunk_size, object_id=object_id, dek_id=dek_id, raw=raw)


def read_header(fp: BinaryIO) -> Header:
    """Read and parse a header from the start of fp; IntegrityError if it is malformed."""
    fixed = _read_exact(fp, _FIXED.size)
    magic, version, suite, chunk_size, object_id, dek_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise IntegrityError("not a Lightbox blob (bad magic)")
    if version != VERSION:
        raise IntegrityError(f"unsupported blob format version {version}")
    if suite != SUITE_AES_256_GCM:
        raise IntegrityError(f"unsupported cipher suite {suite}")
    # SECURITY: fields are checked before use because the header is only authenticated
    # once a chunk decrypts; a forged size or id must not drive an allocation or a lookup.
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(f"chunk size {chunk_size} out of bounds")
    if not 1 <= dek_len <= MAX_DEK_ID_LENGTH:
        raise IntegrityError("bad DEK id length in header")
    dek_bytes = _read_exact(fp, dek_len)
    try:
        dek_id = dek_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityError("bad DEK id in header") from None
    if not DEK_ID_RE.fullmatch(dek_id):
        raise IntegrityError("bad DEK id in header")
    return Header(chunk_size=chunk_size, object_id=object_id, dek_id=dek_id, raw=fixed + dek_bytes)


@dataclass(frozen=True)
class Layout:
    """Where each chunk of a blob lies, derived from its header and stored size."""

    header_size: int
    chunk_size: int
    chunk_count: int
    size: int  # plaintext bytes

    @property
    def record_size(self) -> int:
        """Stored bytes of a full chunk record."""
        return self.chunk_size + CHUNK_OVERHEAD

    @property
    def last_chunk_size(self) -> int:
        """Plaintext bytes in the last chunk (0..chunk_size)."""
        return self.size - (self.chunk_count - 1) * self.chunk_size

    @property
    def largest_chunk(self) -> int:
        """Plaintext bytes of the largest chunk; sizes the buffers a reader needs."""
        return self.chunk_size if self.chunk_count > 1 else self.last_chunk_size

    def record_span(self, index: int) -> tuple[int, int]:
        """Return (offset, length) of chunk record ``index`` in the stored blob."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(index)
        plain = self.chunk_size if index < self.chunk_count - 1 else self.last_chunk_size
        return self.header_size + index * self.record_size, plain + CHUNK_OVERHEAD

    def chunk_range(self, offset: int, length: int) -> range:
        """Indexes of the chunks holding plaintext bytes [offset, offset + length)."""
        end = min(offset + length, self.size)
        if offset >= end:
            return range(0)
        return range(offset // self.chunk_size, (end - 1) // self.chunk_size + 1)


def layout_of(header: Header, stored_size: int) -> Layout:
    """Derive the chunk layout from a header and the stored size; IntegrityError if impossible."""
    body = stored_size - len(header.raw)
    record = header.chunk_size + CHUNK_OVERHEAD
    if body < CHUNK_OVERHEAD:
        raise IntegrityError("blob truncated: no final chunk")
    count = -(-body // record)
    last_plain = body - (count - 1) * record - CHUNK_OVERHEAD
    if last_plain < 0:
        raise IntegrityError("blob truncated inside a chunk")
    return Layout(
        header_size=len(header.raw),
        chunk_size=header.chunk_size,
        chunk_count=count,
        size=(count - 1) * header.chunk_size + last_plain,
    )


def chunk_aad(header: Header, index: int, last: bool) -> bytes:
    """Associated data of chunk ``index``: header bytes, index and last-chunk flag."""
    return header.raw + _CHUNK_TRAILER.pack(index, 1 if last else 0)


def encrypt_chunk(
    aead: AESGCM, header: Header, index: int, last: bool, plain: memoryview, out: memoryview
) -> memoryview:
    """Seal one chunk into ``out`` (len >= len(plain) + 28); return the record's view."""
    size = len(plain) + CHUNK_OVERHEAD
    record = out[:size]
    nonce = secrets.token_bytes(NONCE_SIZE)
    record[:NONCE_SIZE] = nonce
    aad = chunk_aad(header, index, last)
    if _HAS_INTO:
        aead.encrypt_into(nonce, plain, aad, record[NONCE_SIZE:])
    else:  # pragma: no cover - depends on the installed cryptography
        record[NONCE_SIZE:] = aead.encrypt(nonce, bytes(plain), aad)
    return record


def decrypt_chunk(
    aead: AESGCM,
    header: Header,
    index: int,
    last: bool,
    record: memoryview,
    out: memoryview | None = None,
) -> bytes | None:
    """Open one chunk record; into ``out`` if given (returns None), else as new bytes."""
    if len(record) < CHUNK_OVERHEAD:
        raise IntegrityError(f"chunk {index} truncated")
    nonce = bytes(record[:NONCE_SIZE])
    sealed = record[NONCE_SIZE:]
    aad = chunk_aad(header, index, last)
    try:
        if out is None:
            return aead.decrypt(nonce, sealed, aad)
        if _HAS_INTO:
            aead.decrypt_into(nonce, sealed, aad, out)
        else:  # pragma: no cover - depends on the installed cryptography
            out[:] = aead.decrypt(nonce, bytes(sealed), aad)
    except InvalidTag:
        if out is not None:
            # SECURITY: decrypt_into writes plaintext before checking the tag; wipe it so
            # unauthenticated bytes cannot leak through a reused buffer.
            out[:] = bytes(len(out))
        raise IntegrityError(f"chunk {index} failed authentication") from None
    return None


def _read_exact(fp: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = fp.read(size - len(data))
        if not part:
            raise IntegrityError("blob truncated inside the header")
        data += part
    return data
