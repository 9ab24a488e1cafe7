"""The streamed ZIP of a share's scope: original DICOM files plus MANIFEST.sha256.

Memory stays constant whatever the study size: zipstream-ng pulls each file from a generator
that reads the decrypting blob reader one chunk at a time, and the response body is an async
generator (Django buffers a sync iterator whole under ASGI). Each file's SHA-256 is computed on
the bytes actually sent and checked against `Instance.sha256_stored`; MANIFEST.sha256 comes
last (sha256sum format), built from those computed digests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from zipstream import ZIP_STORED, ZipStream

from archive.storage import open_instance_blob
from sharing import services

logger = logging.getLogger("lightbox.sharing")

CHUNK = 1024 * 1024


class IntegrityError(Exception):
    """A stored object's bytes do not hash to the digest recorded at ingest."""


class _Tally:
    def __init__(self):
        self.digests: list[tuple[str, str]] = []
        self.size = 0
        self.manifest_sha256 = ""


def _arcname(index: int, instance) -> str:
    return f"DICOM/{instance.series.series_number or 0:04d}-{instance.series_id}/{index:05d}.dcm"


def _file_chunks(instance, arcname: str, tally: _Tally) -> Iterator[bytes]:
    digest = hashlib.sha256()
    reader = open_instance_blob(instance)
    try:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            yield chunk
    finally:
        reader.close()
    hexdigest = digest.hexdigest()
    if hexdigest != instance.sha256_stored:
        # SECURITY: never hand out silently corrupted or swapped data; abort the archive.
        raise IntegrityError(f"instance {instance.pk} does not match its stored SHA-256")
    tally.digests.append((hexdigest, arcname))


def _manifest(tally: _Tally) -> Iterator[bytes]:
    # Runs after every file before it was streamed (zipstream-ng consumes entries in order).
    text = "".join(f"{digest}  {name}\n" for digest, name in tally.digests).encode()
    tally.manifest_sha256 = hashlib.sha256(text).hexdigest()
    yield text


def zip_stream(instances) -> tuple[ZipStream, _Tally]:
    """A lazily built ZIP of `instances` (evaluated list, in order) and the tally it fills."""
    tally = _Tally()
    archive = ZipStream(compress_type=ZIP_STORED)
    for index, instance in enumerate(instances, start=1):
        name = _arcname(index, instance)
        archive.add(_file_chunks(instance, name, tally), name)
    archive.add(_manifest(tally), "MANIFEST.sha256")
    return archive, tally


async def stream_and_audit(*, share, request, instances) -> AsyncIterator[bytes]:
    """Yield the ZIP's bytes; audit the download (size, manifest hash) when it ends either way."""
    archive, tally = zip_stream(instances)
    iterator = iter(archive)
    completed = False
    try:
        while True:
            chunk = await sync_to_async(next)(iterator, None)
            if chunk is None:
                break
            tally.size += len(chunk)
            yield chunk
        completed = True
    except IntegrityError:
        logger.error("share download aborted: stored object failed its integrity check", exc_info=True)
        raise
    finally:
        await sync_to_async(services.record_download)(
            share=share, request=request, files=len(tally.digests), size=tally.size,
            manifest_sha256=tally.manifest_sha256, completed=completed,
        )
