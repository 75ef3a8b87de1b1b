"""Upscaling: for now the built-in classical upscaler, a Lanczos resize.

The generation issue adds the Stable Diffusion x4 upscaler and tiling; the render kind, routing,
provenance and storage path an upscale takes through the farm are already the real ones.
"""

from __future__ import annotations

import hashlib

from PIL import Image

from farm.errors import InvalidInput

BUILTIN_UPSCALER = "lanczos"
# A built-in upscaler has no weights file; its registry hash identifies the algorithm and its
# version instead, so provenance still says exactly what made an image.
BUILTIN_UPSCALER_URI = "builtin:lanczos"
BUILTIN_UPSCALER_SHA256 = hashlib.sha256(b"renderfarm builtin upscaler: Pillow Lanczos resize, v1").hexdigest()
MIN_SCALE = 1.0
MAX_SCALE = 8.0  # as AUTOMATIC1111's extras tab
MAX_OUTPUT_SIDE = 8192


def validate_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not MIN_SCALE < scale <= MAX_SCALE:
        raise InvalidInput("scale", f"must be a number above {MIN_SCALE:g} and at most {MAX_SCALE:g}, got {scale!r}")


def upscaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The output size for a scale factor; InvalidInput("scale") when out of range."""
    validate_scale(scale)
    size = round(width * scale), round(height * scale)
    if max(size) > MAX_OUTPUT_SIDE:
        raise InvalidInput("scale", f"{width}x{height} scaled by {scale:g} is {size[0]}x{size[1]}; "
                                    f"the largest side allowed is {MAX_OUTPUT_SIDE}")
    return size


def upscale_image(image: Image.Image, scale: float) -> Image.Image:
    return image.convert("RGB").resize(upscaled_size(image.width, image.height, scale), Image.Resampling.LANCZOS)
