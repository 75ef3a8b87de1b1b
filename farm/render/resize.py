"""Fitting a generated image to a channel format's exact size.

A model generates at about its native area (farm.campaigns.formats.generation_size); the image is
then scaled with Lanczos until it covers the format and cropped to it around the centre ("cover",
as CSS `object-fit: cover`). Pillow's `ImageOps.fit` does exactly that, cropping first so only the
pixels that survive are resampled.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from farm.errors import InvalidInput

MAX_FORMAT_SIDE = 8192


def check_format_size(width: object, height: object, field: str = "format") -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FORMAT_SIDE:
            raise InvalidInput(f"{field}.{name}", f"must be a whole number from 1 to {MAX_FORMAT_SIDE}, got {value!r}")


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` resized (Lanczos) to cover width x height and centre-cropped to exactly that size."""
    check_format_size(width, height)
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
