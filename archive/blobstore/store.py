"""The encrypted blob store: write, read, verify and re-encrypt blobs on a storage backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from . import format as fmt
from .backends import StorageBackend, check_name
from .errors import BlobNotFound, BlobStoreError, IntegrityError, KeyNotFound
from .reader import BlobReader
from .writer import BlobInfo, BlobWriter

KeyResolver = Callable[[str], bytes]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of decrypting and checking one blob; ``error`` says why when not ``ok``."""

    blob_id: str
    ok: bool
    size: int | None = None
    sha256_hex: str | None = None
    error: str | None = None


class BlobStore:
    """Chunked AES-256-GCM blobs on a backend; DEKs come from ``key_resolver(dek_id)``.

    The store never holds wrapped keys or talks to the database: writers pass the DEK
    they encrypt with, readers get it from the resolver by the DEK id in the blob header.
    Blob ids are random and generated here; callers store them, never choose them.
    """

    def __init__(
        self,
        backend: StorageBackend,
        key_resolver: KeyResolver,
        *,
        chunk_size: int = fmt.DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.backend = backend
        self._resolve = key_resolver
        self.chunk_size = fmt.validate_chunk_size(chunk_size)

    # -- writing -------------------------------------------------------------------

    def writer(self, *, dek_id: str, dek: bytes, durable: bool = True) -> BlobWriter:
        """Start an incremental write; use as a context manager, read ``.info`` after.

        durable=False defers the flush to disk: call ``sync`` before recording the blob id.
        """
        return BlobWriter(self.backend, dek_id=dek_id, dek=dek, chunk_size=self.chunk_size, durable=durable)

    def sync(self, blob_ids: Iterable[str]) -> None:
        """Make blobs written with durable=False crash-safe, all at once."""
        self.backend.sync([check_name(blob_id) for blob_id in blob_ids])

    def write(self, data: bytes | bytearray | memoryview | BinaryIO, *, dek_id: str, dek: bytes) -> BlobInfo:
        """Encrypt bytes or a binary stream into a new blob, hashing the plaintext on the way."""
        with self.writer(dek_id=dek_id, dek=dek) as writer:
            if isinstance(data, bytes | bytearray | memoryview):
                writer.write(data)
            else:
                writer.write_from(data)
            return writer.commit()

    # -- reading -------------------------------------------------------------------

    def open(self, blob_id: str) -> BlobReader:
        """Open a blob as a seekable read-only binary file of its plaintext."""
        fp = self.backend.open_read(check_name(blob_id))
        try:
            header = fmt.read_header(fp)
            # SECURITY: the header's object id is bound into every chunk; matching it to
            # the name stops one complete, valid blob being swapped in for another.
            if header.blob_id != blob_id:
                raise IntegrityError("blob header does not belong to this blob id")
            layout = fmt.layout_of(header, fp.seek(0, 2))
            aead = fmt.new_aead(self._dek(header.dek_id))
            return BlobReader(fp, header, layout, aead)
        except BaseException:
            fp.close()
            raise

    def read_range(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return up to ``length`` plaintext bytes from ``offset``, decrypting only those chunks."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        with self.open(blob_id) as reader:
            reader.seek(offset)
            return reader.read(length)

    def iter_chunks(self, blob_id: str) -> Iterator[bytes]:
        """Yield the plaintext chunk by chunk; raises IntegrityError at the first bad chunk."""
        with self.open(blob_id) as reader:
            yield from reader.iter_chunks()

    def size(self, blob_id: str) -> int:
        """Plaintext size from the header and stored size, without decrypting.

        Not authenticated on its own: a blob cut at a chunk boundary reports a smaller
        size, and the first read that reaches the end raises IntegrityError.
        """
        with self.backend.open_read(check_name(blob_id)) as fp:
            header = fmt.read_header(fp)
            return fmt.layout_of(header, fp.seek(0, 2)).size

    def dek_id_of(self, blob_id: str) -> str:
        """The DEK id named in the blob's header (read without decrypting)."""
        with self.backend.open_read(check_name(blob_id)) as fp:
            return fmt.read_header(fp).dek_id

    def exists(self, blob_id: str) -> bool:
        """Whether a blob is stored under this id."""
        return self.backend.exists(check_name(blob_id))

    def iter_blob_ids(self) -> Iterator[str]:
        """Yield every stored blob id (for verification and orphan sweeps)."""
        return self.backend.iter_names()

    def delete(self, blob_id: str) -> None:
        """Remove a blob; BlobNotFound if there is none."""
        self.backend.delete(check_name(blob_id))

    # -- integrity and re-encryption -----------------------------------------------

    def verify(self, blob_id: str, expected_sha256: str | None = None) -> VerifyResult:
        """Decrypt and authenticate every chunk, then compare the SHA-256 if one is given."""
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self.iter_chunks(blob_id):
                digest.update(chunk)
                size += len(chunk)
        except (IntegrityError, KeyNotFound, BlobNotFound) as exc:
            return VerifyResult(blob_id, ok=False, error=f"{type(exc).__name__}: {exc}")
        sha = digest.hexdigest()
        if expected_sha256 is not None and sha != expected_sha256.lower():
            return VerifyResult(blob_id, False, size, sha, "SHA-256 differs from the expected")
        return VerifyResult(blob_id, ok=True, size=size, sha256_hex=sha)

    def verify_all(self, expected_sha256: Callable[[str], str | None] | None = None) -> Iterator[VerifyResult]:
        """Verify every stored blob, one result each; ``expected_sha256(blob_id)`` may be None."""
        for blob_id in self.iter_blob_ids():
            expected = expected_sha256(blob_id) if expected_sha256 is not None else None
            yield self.verify(blob_id, expected)

    def reencrypt(
        self,
        blob_id: str,
        *,
        new_dek_id: str,
        new_dek: bytes,
        expected_sha256: str | None = None,
    ) -> BlobInfo:
        """Copy a blob into a new one under another DEK, streamed; the old blob is untouched.

        The caller points its records at the new id, then deletes the old blob: each blob
        moves atomically on its own, which is what makes DEK rotation resumable.
        """
        with self.writer(dek_id=new_dek_id, dek=new_dek) as writer:
            for chunk in self.iter_chunks(blob_id):
                writer.write(chunk)
            return writer.commit(expected_sha256=expected_sha256)

    # -- internals -----------------------------------------------------------------

    def _dek(self, dek_id: str) -> bytes:
        try:
            dek = self._resolve(dek_id)
        except KeyNotFound:
            raise
        except KeyError:
            raise KeyNotFound(dek_id) from None
        if not isinstance(dek, bytes | bytearray) or len(dek) != fmt.KEY_SIZE:
            raise BlobStoreError(f"key resolver returned an invalid key for {dek_id}")
        return bytes(dek)
