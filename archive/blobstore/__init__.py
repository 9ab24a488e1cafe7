"""Encrypted blob store: chunked AES-256-GCM objects, per-organisation DEKs wrapped by a KEK.

Django-free: the archive app supplies a storage backend, a DEK resolver backed by its
database, and a KeyProvider. See ``format`` for the on-disk layout.
"""

from .backends import LocalFileBackend, StorageBackend, WriteHandle
from .errors import BlobNotFound, BlobStoreError, IntegrityError, InvalidBlobName, KeyNotFound
from .format import DEFAULT_CHUNK_SIZE
from .keys import KeyProvider, LocalFileKeyProvider, WrappedKey, generate_dek
from .reader import BlobReader
from .rotation import DekRotation, KekRotation, rewrap, rotate_dek, rotate_kek
from .store import BlobStore, KeyResolver, VerifyResult
from .writer import BlobInfo, BlobWriter

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobStoreError",
    "BlobWriter",
    "DekRotation",
    "IntegrityError",
    "InvalidBlobName",
    "KekRotation",
    "KeyNotFound",
    "KeyProvider",
    "KeyResolver",
    "LocalFileBackend",
    "LocalFileKeyProvider",
    "StorageBackend",
    "VerifyResult",
    "WrappedKey",
    "WriteHandle",
    "generate_dek",
    "rewrap",
    "rotate_dek",
    "rotate_kek",
]
