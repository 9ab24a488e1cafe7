"""Warm a fresh render worker's code paths before it reports ready.

The first job a worker ran took ~35 ms more than the next (pydicom's first parse builds its
dictionaries' lookups, numpy and the encoders set themselves up on first call): on a
just-started server that was most of the first frame's render. A tiny synthetic instance through
the same steps moves that cost to start-up.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from viewer.render import PixelSource, RenderParams, render_instance

__all__ = ["warm_engine"]

# A fixed, made-up UID under the pydicom root: the instance never leaves this process
_UID = "1.2.826.0.1.3680043.8.498.1"


def _synthetic_instance() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = _UID
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, _UID, "OT"
    ds.set_pixel_data(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32), "MONOCHROME2", 12)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def warm_engine() -> int:
    """Parse, decode, window, watermark and encode (JPEG and PNG) one small synthetic image.

    Returns
    -------
    int
        Bytes encoded (the images themselves are dropped).
    """
    data = _synthetic_instance()
    views = (RenderParams(format="jpeg", quality=80, watermark="warm-up"), RenderParams(format="png", width=16))
    return sum(len(render_instance(PixelSource(data), params)) for params in views)
