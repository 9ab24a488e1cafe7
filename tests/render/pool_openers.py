"""Opener functions for the render pool tests, imported by the worker processes."""

from __future__ import annotations

import io
import os
import time
from typing import BinaryIO


def open_path(path: str) -> BinaryIO:
    """Open a DICOM file (the archive's opener decrypts a blob instead)."""
    return open(path, "rb")


def open_bytes(data: bytes) -> BinaryIO:
    """Wrap bytes already in the job (small synthetic files only)."""
    return io.BytesIO(data)


def open_slow(arg: tuple[str, str, float]) -> BinaryIO:
    """Touch `marker`, sleep `seconds`, then open `path`: a job that is visibly mid-render."""
    path, marker, seconds = arg
    with open(marker, "w") as fp:
        fp.write(str(os.getpid()))
    time.sleep(seconds)
    return open(path, "rb")


def open_hog(nbytes: int) -> BinaryIO:
    """Allocate `nbytes` before opening anything: a job over the worker memory limit."""
    hog = bytearray(nbytes)
    hog[-1] = 1
    raise AssertionError("the allocation should have failed")


def open_spin_python(seconds: float) -> BinaryIO:
    """Burn CPU in Python bytecode (the per-job CPU timer interrupts it)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    raise AssertionError("the CPU budget should have stopped this")


def open_spin_c(count: int) -> BinaryIO:
    """Burn CPU inside one C call that never checks for signals (only RLIMIT_CPU stops it)."""
    sum(range(count))
    raise AssertionError("the CPU limit should have stopped this")


def open_crash(path: str) -> BinaryIO:
    """Kill the worker process outright, like a segfaulting codec."""
    os.abort()


def dispatch(arg: tuple[str, object]) -> BinaryIO:
    """Call the opener of this module named by the job: one pool, many behaviours."""
    name, inner = arg
    opener = {
        "open_path": open_path,
        "open_slow": open_slow,
        "open_hog": open_hog,
        "open_spin_python": open_spin_python,
        "open_spin_c": open_spin_c,
        "open_crash": open_crash,
    }[name]
    return opener(inner)  # type: ignore[arg-type]


class CountingOpener:
    """An in-process opener over fixed bytes that counts how often it was called."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    def __call__(self, _arg: object) -> BinaryIO:
        self.calls += 1
        return io.BytesIO(self.data)
