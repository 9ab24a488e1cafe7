"""The multipart/related pull parser, fed the way the network feeds it: in chunks of any size."""

from __future__ import annotations

import os

import pytest

from archive.dicomweb.multipart_parser import MalformedMultipart, MultipartReader

BOUNDARY = b"lightbox-test-boundary"


def _body(parts: list[bytes]) -> bytes:
    pieces = [b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n" for part in parts]
    return b"".join(pieces) + b"--" + BOUNDARY + b"--\r\n"


def _chunked(body: bytes, size: int):
    """A `read_into` that appends at most `size` bytes of `body` per call, counting the calls."""
    position = 0
    calls = []

    def read_into(buffer: bytearray) -> int:
        nonlocal position
        piece = body[position : position + size]
        position += len(piece)
        buffer += piece
        calls.append(len(piece))
        return len(piece)

    read_into.calls = calls  # type: ignore[attr-defined]
    return read_into


def _read_all(reader: MultipartReader, size: int) -> list[list[bytes]]:
    parts = []
    while (part := reader.next_part()) is not None:
        assert part.content_type == "application/dicom"
        pieces = []
        while piece := part.read(size):
            pieces.append(piece)
        parts.append(pieces)
    return parts


# Contents that look like the delimiter, or end in part of it, at every chunk alignment.
CONTENTS = [os.urandom(70_000), b"\r\n--" + BOUNDARY[:-1] + b"x" * 500, b"", b"\r\n-", os.urandom(3)]


@pytest.mark.parametrize("chunk", [1, 7, 25, 4096, 1 << 20])
def test_parts_come_back_whole_whatever_the_chunking(chunk):
    reader = MultipartReader(_chunked(_body(CONTENTS), chunk), BOUNDARY)
    parts = _read_all(reader, 1 << 20)
    assert [b"".join(pieces) for pieces in parts] == CONTENTS


@pytest.mark.parametrize("chunk", [7, 4096])
def test_a_read_gathers_its_whole_size_across_chunks_into_one_piece(chunk):
    """So ingest copies a small object out of the network's chunks once, not chunk by chunk."""
    reader = MultipartReader(_chunked(_body(CONTENTS), chunk), BOUNDARY)
    parts = _read_all(reader, 1 << 20)
    assert len(parts[0]) == 1 and len(parts[0][0]) == 70_000


def test_reads_of_a_large_part_are_bounded_by_the_size_asked_for():
    content = os.urandom(300_000)
    reader = MultipartReader(_chunked(_body([content]), 50_000), BOUNDARY)
    part = reader.next_part()
    pieces = []
    while piece := part.read(64_000):
        assert len(piece) <= 64_000
        pieces.append(piece)
        assert len(reader._buf) <= 64_000 + 50_000 + len(BOUNDARY) + 8  # size + one chunk
    assert b"".join(pieces) == content


@pytest.mark.parametrize("cut", [10, 60, 5_000])
def test_a_body_that_ends_inside_a_part_is_malformed(cut):
    body = _body([os.urandom(10_000)])[:cut]
    reader = MultipartReader(_chunked(body, 1024), BOUNDARY)
    with pytest.raises(MalformedMultipart):
        _read_all(reader, 1 << 20)
