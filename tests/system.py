"""Tests that need a program from Debian: run when installed, else skip with the package name.

Under LIGHTBOX_REQUIRE_ALL=1 (set by .ci/run) a missing program is a failure, so CI can never
go green by skipping the browser or OCR tests.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_program(program: str, *, package: str) -> str:
    """Return the program's path, or skip (fail under LIGHTBOX_REQUIRE_ALL=1) naming the package."""
    path = shutil.which(program) or (program if os.path.isabs(program) and os.access(program, os.X_OK) else None)
    if path:
        return path
    message = f"{program} is not installed: `apt-get install -y {package}` to run this test"
    if os.environ.get("LIGHTBOX_REQUIRE_ALL") == "1":
        pytest.fail(message + " (LIGHTBOX_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(message)


def require_service(name: str, available: bool, *, how: str) -> None:
    """Skip (fail under LIGHTBOX_REQUIRE_ALL=1) when a server the test needs is not configured."""
    if available:
        return
    message = f"{name} is not configured: {how}"
    if os.environ.get("LIGHTBOX_REQUIRE_ALL") == "1" and os.environ.get("LIGHTBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)
