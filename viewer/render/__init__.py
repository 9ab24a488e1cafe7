"""Lightbox rendering engine: DICOM frame -> display pixels -> JPEG/PNG/WebP bytes.

Pure numpy/pydicom/Pillow (plus pylibjpeg and simplejpeg); no Django, so it can be tested and
benchmarked on its own. See docs/render-pipeline.md for the order of operations.
"""

from .decode import DEFAULT_MAX_PIXELS, DecodedFrame, PixelSource, decode_frame, frame_index
from .encode import MEDIA_TYPES, encode
from .errors import (
    CorruptPixelData,
    ImageTooLarge,
    InvalidRenderParams,
    RenderError,
    UnsupportedTransferSyntax,
)
from .lut import (
    default_window,
    display_table,
    modality_lut,
    resolve_window,
    to_display,
    voi_lut,
    voi_window,
    window_float,
)
from .overlay import apply_redactions, apply_watermark, watermark_alpha, watermark_pitch
from .params import (
    CT_WINDOW_PRESETS,
    Ellipse,
    ImageInfo,
    Lut,
    Rect,
    RenderParams,
    Window,
    from_dataset,
    image_info,
)
from .pipeline import measure_region, render_array, render_frame, render_instance
from .tiles import TILE_SIZE, Level, Pyramid, build_pyramid, pyramid_levels, render_tile, tile_grid
from .viewport import crop_region, orient, output_size, resize, source_region

__all__ = [
    "CT_WINDOW_PRESETS",
    "DEFAULT_MAX_PIXELS",
    "MEDIA_TYPES",
    "TILE_SIZE",
    "CorruptPixelData",
    "DecodedFrame",
    "Ellipse",
    "ImageInfo",
    "ImageTooLarge",
    "InvalidRenderParams",
    "Level",
    "Lut",
    "PixelSource",
    "Pyramid",
    "Rect",
    "RenderError",
    "RenderParams",
    "UnsupportedTransferSyntax",
    "Window",
    "apply_redactions",
    "apply_watermark",
    "build_pyramid",
    "crop_region",
    "decode_frame",
    "default_window",
    "display_table",
    "encode",
    "frame_index",
    "from_dataset",
    "image_info",
    "measure_region",
    "modality_lut",
    "orient",
    "output_size",
    "pyramid_levels",
    "render_array",
    "render_frame",
    "render_instance",
    "render_tile",
    "resize",
    "resolve_window",
    "source_region",
    "tile_grid",
    "to_display",
    "voi_lut",
    "voi_window",
    "watermark_alpha",
    "watermark_pitch",
    "window_float",
]
