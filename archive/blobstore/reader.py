"""A seekable, read-only file over one encrypted blob that decrypts only the chunks it reads."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import format as fmt
from .errors import IntegrityError


class BlobReader(io.BufferedIOBase):
    """Plaintext view of a blob: read/readinto/seek/tell like a file opened "rb".

    Each read fetches and authenticates only the chunk records it touches, and keeps the
    last decrypted chunk, so pydicom can parse the header and jump to one frame without
    decrypting the rest. No byte is returned before its chunk's tag has been checked. A
    read that reaches the end also authenticates the final chunk, so a blob cut short at
    a chunk boundary raises IntegrityError instead of looking like a shorter object.
    Like any file object it is not thread-safe: open one reader per request.
    """

    def __init__(self, fp: BinaryIO, header: fmt.Header, layout: fmt.Layout, aead: AESGCM) -> None:
        super().__init__()
        self._fp = fp
        self._header = header
        self._layout = layout
        self._aead = aead
        self._pos = 0
        largest = layout.largest_chunk
        # One allocation for both buffers: two large ones per open make glibc return and
        # re-fault the memory each time, which cost more than decrypting a chunk.
        buffers = memoryview(bytearray(2 * largest + fmt.CHUNK_OVERHEAD))
        self._record = buffers[: largest + fmt.CHUNK_OVERHEAD]
        self._plain = buffers[largest + fmt.CHUNK_OVERHEAD :]
        self._cached_index = -1
        self._cached_size = 0
        self._end_verified = False
        self.chunks_decrypted = 0

    @property
    def size(self) -> int:
        """Plaintext size in bytes."""
        return self._layout.size

    @property
    def dek_id(self) -> str:
        """Id of the DEK this blob is encrypted with."""
        return self._header.dek_id

    # -- io protocol ---------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._layout.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        total = self._layout.size
        end = total if size is None or size < 0 else min(self._pos + size, total)
        start = self._pos
        if start >= end:
            if size != 0:
                self._verify_end()
            return b""
        first, last = start // self._layout.chunk_size, (end - 1) // self._layout.chunk_size
        if first == last:
            base = first * self._layout.chunk_size
            data = bytes(self._load(first)[start - base : end - base])
        else:
            buffer = bytearray(end - start)
            self._copy_into(start, memoryview(buffer))
            data = bytes(buffer)
        self._pos = end
        if end == total:
            self._verify_end()
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        total = self._layout.size
        count = max(0, min(len(view), total - self._pos))
        if count:
            self._copy_into(self._pos, view[:count])
            self._pos += count
        if len(view) and self._pos + (len(view) - count) >= total:
            self._verify_end()
        return count

    def readinto1(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._fp.close()
            self._cached_index = -1
        super().close()

    # -- whole-object streaming ------------------------------------------------------

    def iter_chunks(self) -> Iterator[bytes]:
        """Yield each chunk's plaintext in order (new bytes each), authenticating all of them."""
        self._check_open()
        layout = self._layout
        for index in range(layout.chunk_count):
            last = index == layout.chunk_count - 1
            record = self._fetch(index)
            plain = cast(bytes, fmt.decrypt_chunk(self._aead, self._header, index, last, record))
            self.chunks_decrypted += 1
            if last:
                self._end_verified = True
            yield plain

    # -- internals -----------------------------------------------------------------

    def _copy_into(self, start: int, view: memoryview) -> None:
        chunk_size = self._layout.chunk_size
        done = 0
        for index in self._layout.chunk_range(start, len(view)):
            base = index * chunk_size
            plain = self._load(index)
            lo = start + done - base
            take = min(len(plain) - lo, len(view) - done)
            view[done : done + take] = plain[lo : lo + take]
            done += take

    def _load(self, index: int) -> memoryview:
        if index == self._cached_index:
            return self._plain[: self._cached_size]
        last = index == self._layout.chunk_count - 1
        record = self._fetch(index)
        out = self._plain[: len(record) - fmt.CHUNK_OVERHEAD]
        self._cached_index = -1
        fmt.decrypt_chunk(self._aead, self._header, index, last, record, out)
        self.chunks_decrypted += 1
        self._cached_index, self._cached_size = index, len(out)
        if last:
            self._end_verified = True
        return out

    def _fetch(self, index: int) -> memoryview:
        offset, length = self._layout.record_span(index)
        record = self._record[:length]
        self._fp.seek(offset)
        done = 0
        while done < length:
            got = self._fp.readinto(record[done:])
            if not got:
                # The blob shrank after it was opened.
                raise IntegrityError(f"chunk {index} truncated")
            done += got
        return record

    def _verify_end(self) -> None:
        if not self._end_verified:
            self._load(self._layout.chunk_count - 1)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed blob reader")
