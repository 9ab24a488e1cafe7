"""Exceptions raised by the rendering engine.

Messages name the DICOM attribute or tag and give expected versus actual values. They never
contain PHI (no names, IDs, dates, paths or header strings), so callers may map them to a coded
error for the user; details beyond the message belong in the server log only.
"""

from __future__ import annotations

__all__ = [
    "CorruptPixelData",
    "ImageTooLarge",
    "InvalidRenderParams",
    "RenderError",
    "UnsupportedTransferSyntax",
]


class RenderError(Exception):
    """Base class of every error the rendering engine raises on purpose."""

    code = "render_error"


class UnsupportedTransferSyntax(RenderError):
    """The (0002,0010) Transfer Syntax UID is missing or has no available decoder."""

    code = "unsupported_transfer_syntax"


class CorruptPixelData(RenderError):
    """The pixel data, or the Image Pixel module describing it, cannot be trusted."""

    code = "corrupt_pixel_data"


class ImageTooLarge(RenderError):
    """The declared image dimensions exceed the caller's pixel budget."""

    code = "image_too_large"


class InvalidRenderParams(RenderError):
    """A render request is malformed or does not fit the image."""

    code = "invalid_render_params"
