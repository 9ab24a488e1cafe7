"""Lossless re-encoding and Part 10 serialisation of synthetic datasets."""

import copy
import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

# Pixel data stays native; only the dataset encoding changes.
NATIVE_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
)
# Encoders pydicom 3 ships plugins for: RLE (pydicom itself or pylibjpeg-rle),
# JPEG-LS (pyjpegls), JPEG 2000 (pylibjpeg-openjpeg).
COMPRESSED_TRANSFER_SYNTAXES = (RLELossless, JPEGLSLossless, JPEG2000Lossless)


class EncoderUnavailable(RuntimeError):
    """The encoder plugin for a transfer syntax is not installed."""


def compress(ds: Dataset, *, transfer_syntax: str) -> Dataset:
    """Return a copy of `ds` losslessly re-encoded in `transfer_syntax`; `ds` is unchanged."""
    uid = UID(transfer_syntax)
    if uid not in NATIVE_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES:
        supported = ", ".join(ts.name for ts in NATIVE_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES)
        raise ValueError(
            f"synthetic studies are re-encoded losslessly only; {uid} ({uid.name}) is not one of: {supported}"
        )
    if uid in COMPRESSED_TRANSFER_SYNTAXES:
        encoder = get_encoder(uid)
        if not encoder.is_available:
            missing = "; ".join(encoder.missing_dependencies) or "no plugin registered"
            raise EncoderUnavailable(f"cannot encode {uid.name}: its encoder plugin is not installed ({missing})")

    out = copy.deepcopy(ds)
    if out.file_meta.TransferSyntaxUID.is_compressed:
        out.decompress(generate_instance_uid=False)
    if uid in NATIVE_TRANSFER_SYNTAXES:
        out.file_meta.TransferSyntaxUID = uid
    else:
        # PS3.5 8.2: a lossless re-encoding is the same instance, so the SOP
        # Instance UID is kept (pydicom would mint a new one by default).
        out.compress(uid, generate_instance_uid=False)
        if uid == RLELossless and out.SamplesPerPixel > 1:
            # PS3.5 G.2: RLE stores each colour component in its own segment, so the
            # encoded data is colour-by-plane; DCMTK writes 1 here too.
            out.PlanarConfiguration = 1
    return out


def to_bytes(ds: Dataset) -> bytes:
    """Serialise `ds` as a DICOM Part 10 file: preamble, 'DICM', file meta, then the dataset."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def instance_filename(ds: Dataset) -> str:
    """A server-style file name for `ds`: a digest of its SOP Instance UID, plus '.dcm'."""
    # PRIVACY: names never come from patient attributes, so a directory listing
    # reveals nothing about who the images belong to.
    return hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest()[:32] + ".dcm"


def write_study(datasets: Iterable[Dataset], *, directory: Path | str) -> list[Path]:
    """Write each dataset as a Part 10 file in `directory` (created if missing); return paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / instance_filename(ds)
        partial = path.with_suffix(".partial")
        partial.write_bytes(to_bytes(ds))
        # Readers never see a half-written file, and re-running the demo replaces in place.
        os.replace(partial, path)
        paths.append(path)
    return paths
