"""The render workers' opener: decrypt one blob inside the worker process (Django-free).

The web process resolves the organisation's data key (it has the database) and hands it to the
worker with the job, over the worker's private pipe; the worker never sees the KEK or the
database. SECURITY: the key lives only in memory of processes we started.
"""

from __future__ import annotations

from archive.blobstore import BlobReader, BlobStore, LocalFileBackend

_stores: dict[tuple[str, str], BlobStore] = {}


def open_encrypted(arg: tuple[str, str, str, bytes]) -> BlobReader:
    """Open blob `blob_id` under `root`, decrypting with the given data key."""
    root, blob_id, dek_id, dek = arg
    store = _stores.get((root, dek_id))
    if store is None:
        if len(_stores) > 64:
            _stores.clear()
        store = _stores[(root, dek_id)] = BlobStore(LocalFileBackend(root), lambda _key_id, _dek=dek: _dek)
    return store.open(blob_id)
