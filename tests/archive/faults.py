"""Storage faults for archive tests: blob writes that fail the way a full or broken disk does."""

from __future__ import annotations

import os

from archive.blobstore import writer as writer_module


def fail_blob_writes(monkeypatch, *, first: int, error: int, every_later: bool = False) -> None:
    """Make `BlobWriter.write` call number `first` (counted from now, 1-based) raise OSError(`error`).

    Every object writes its preamble, then the rest of its head, then (objects over
    `services.SMALL_OBJECT_BYTES`) each streamed chunk. With `every_later`, every call after it
    fails too (a disk that stays full).
    """
    real_write = writer_module.BlobWriter.write
    calls = {"n": 0}

    def failing(self, data):
        calls["n"] += 1
        if calls["n"] == first or (every_later and calls["n"] > first):
            raise OSError(error, os.strerror(error))
        return real_write(self, data)

    monkeypatch.setattr(writer_module.BlobWriter, "write", failing)
