"""Exceptions raised by the encrypted blob store."""


class BlobStoreError(Exception):
    """Base class for every blob store error."""


class IntegrityError(BlobStoreError):
    """Stored bytes failed authentication: a GCM tag, the header, or the chunk sequence.

    Raised for tampering, truncation, reordered or swapped chunks, a wrong key, and
    malformed headers alike; callers must treat the object as unreadable, never retry
    with a more lenient reading.
    """


class KeyNotFound(BlobStoreError):
    """A DEK or KEK id is not known to the resolver or key provider."""


class BlobNotFound(BlobStoreError):
    """No stored object has this blob id."""


class InvalidBlobName(BlobStoreError, ValueError):
    """A blob name is not of the server-generated form (32 lowercase hex characters)."""
