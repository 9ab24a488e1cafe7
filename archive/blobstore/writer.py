"""Streaming encryption of one new blob through a fixed, reused buffer."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from . import format as fmt
from .backends import StorageBackend
from .errors import BlobStoreError, IntegrityError

_spare = threading.local()


def _take_buffers(chunk_size: int) -> tuple[bytearray, bytearray]:
    """A (plaintext, record) buffer pair for `chunk_size`, reused within a thread.

    Allocating two chunk-sized buffers per blob cost more than encrypting a 512 kB object:
    glibc maps and unmaps buffers that large each time, and every page faults in again.
    """
    pairs = getattr(_spare, "pairs", None) or []
    for index, pair in enumerate(pairs):
        if len(pair[0]) == chunk_size:
            return pairs.pop(index)
    return bytearray(chunk_size), bytearray(chunk_size + fmt.CHUNK_OVERHEAD)


def _give_back(pair: tuple[bytearray, bytearray]) -> None:
    pairs = getattr(_spare, "pairs", None)
    if pairs is None:
        pairs = _spare.pairs = []
    if len(pairs) < 2:
        pairs.append(pair)


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob: its id, plaintext size and SHA-256 of the plaintext."""

    blob_id: str
    size: int
    sha256_hex: str


class BlobWriter:
    """Encrypts plaintext as it arrives; memory stays at about two chunks whatever the size.

    Use as a context manager: a clean exit commits, an exception aborts and leaves no
    object behind. Only ciphertext ever reaches the backend, including while in progress.
    """

    def __init__(
        self, backend: StorageBackend, *, dek_id: str, dek: bytes, chunk_size: int, durable: bool = True
    ) -> None:
        self._aead = fmt.new_aead(dek)
        self._header = fmt.new_header(chunk_size=chunk_size, dek_id=dek_id)
        self.blob_id = self._header.blob_id
        self._chunk_size = chunk_size
        self._buffers = _take_buffers(chunk_size)
        self._plain = self._buffers[0]
        self._plain_view = memoryview(self._plain)
        self._record_view = memoryview(self._buffers[1])
        self._peek = bytearray(1)
        self._fill = 0
        self._index = 0
        self._size = 0
        self._sha = hashlib.sha256()
        self.info: BlobInfo | None = None
        self._out = backend.open_write(self.blob_id, durable=durable)
        try:
            self._out.write(self._header.raw)
        except BaseException:
            self._out.abort()
            raise
        self._open = True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Add plaintext; any length, copied through the chunk buffer."""
        self._check_open()
        view = memoryview(data).cast("B")
        total = len(view)
        chunk_size = self._chunk_size
        while view:
            if self._fill == chunk_size:
                # A full buffer is sealed as a non-last chunk only once more data exists.
                self._seal(last=False)
            take = min(chunk_size - self._fill, len(view))
            self._plain_view[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
        return total

    def write_from(self, stream: BinaryIO) -> int:
        """Copy a binary stream to its end, reading straight into the chunk buffer."""
        self._check_open()
        readinto = getattr(stream, "readinto", None)
        if readinto is None:
            total = 0
            while data := stream.read(self._chunk_size):
                total += self.write(data)
            return total
        chunk_size = self._chunk_size
        total = 0
        while True:
            if self._fill == chunk_size:
                # Read one byte ahead to learn whether the full buffer is the last chunk.
                got = readinto(self._peek)
                if got is None:
                    raise BlobStoreError("non-blocking streams are not supported")
                if got == 0:
                    return total
                self._seal(last=False)
                self._plain[0] = self._peek[0]
                self._fill = 1
                total += 1
                continue
            got = readinto(self._plain_view[self._fill :])
            if got is None:
                raise BlobStoreError("non-blocking streams are not supported")
            if got == 0:
                return total
            self._fill += got
            total += got

    def commit(self, *, expected_sha256: str | None = None) -> BlobInfo:
        """Seal the last chunk, make the blob visible atomically and return its BlobInfo.

        With ``expected_sha256``, a plaintext that hashes differently is aborted instead
        (IntegrityError) and nothing is stored.
        """
        self._check_open()
        try:
            self._seal(last=True)
            if expected_sha256 is not None and self._sha.hexdigest() != expected_sha256.lower():
                raise IntegrityError("plaintext SHA-256 differs from the expected value")
            self._out.commit()
        except BaseException:
            self.abort()
            raise
        self._close()
        self.info = BlobInfo(self.blob_id, self._size, self._sha.hexdigest())
        return self.info

    def abort(self) -> None:
        """Discard the blob; nothing is left in storage. Safe to call more than once."""
        if self._open:
            self._close()
            self._out.abort()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._open:
            self.commit()

    def _seal(self, *, last: bool) -> None:
        plain = self._plain_view[: self._fill]
        self._sha.update(plain)
        record = fmt.encrypt_chunk(self._aead, self._header, self._index, last, plain, self._record_view)
        self._out.write(record)
        self._size += self._fill
        self._index += 1
        self._fill = 0

    def _check_open(self) -> None:
        if not self._open:
            raise BlobStoreError("the blob writer is already committed or aborted")

    def _close(self) -> None:
        self._open = False
        # Release the buffers now; a finished writer may be kept around for its info.
        self._plain_view.release()
        self._record_view.release()
        _give_back(self._buffers)
        self._plain = self._peek = bytearray()
