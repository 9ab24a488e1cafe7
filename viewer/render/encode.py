"""Encode display pixels: JPEG (libjpeg-turbo via simplejpeg), PNG and lossless WebP (Pillow)."""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from .errors import InvalidRenderParams

__all__ = ["MEDIA_TYPES", "encode", "encode_jpeg_pillow"]

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

# PNG zlib level 1: several times faster than the default 6 for a few % larger files;
# PNG/WebP are sent when the user stops interacting, so latency matters more than size.
_PNG_COMPRESS_LEVEL = 1
# WebP lossless "method" 0 is the fastest effort; quality is the effort within a method.
_WEBP_METHOD = 0
_WEBP_EFFORT = 25


def _check(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise InvalidRenderParams(f"image: expected uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def encode(img: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode uint8 grey or RGB pixels; same input gives the same bytes.

    Parameters
    ----------
    img : numpy.ndarray
        uint8 (H, W) grey or (H, W, 3) RGB.
    fmt : str
        'jpeg' (lossy, 4:4:4, baseline, via simplejpeg/libjpeg-turbo: measured faster than
        Pillow, see bench/render_bare.py), 'png' or 'webp' (both lossless).
    quality : int
        JPEG quality 1..100; ignored by the lossless formats.

    Returns
    -------
    bytes

    Raises
    ------
    InvalidRenderParams
        Unknown format or an array that is not uint8 grey/RGB.
    """
    img = _check(img)
    if fmt == "jpeg":
        if img.ndim == 2:
            return bytes(simplejpeg.encode_jpeg(img[:, :, None], quality=quality, colorspace="GRAY"))
        return bytes(simplejpeg.encode_jpeg(img, quality=quality, colorspace="RGB", colorsubsampling="444"))
    buffer = io.BytesIO()
    image = Image.fromarray(img)
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", lossless=True, quality=_WEBP_EFFORT, method=_WEBP_METHOD)
    else:
        raise InvalidRenderParams(f"format: expected jpeg, png or webp, got {str(fmt)[:20]!r}")
    return buffer.getvalue()


def encode_jpeg_pillow(img: np.ndarray, quality: int = 90) -> bytes:
    """Encode JPEG with Pillow (kept for the benchmark comparison with simplejpeg).

    Parameters
    ----------
    img : numpy.ndarray
        uint8 grey or RGB.
    quality : int

    Returns
    -------
    bytes
    """
    buffer = io.BytesIO()
    Image.fromarray(_check(img)).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
