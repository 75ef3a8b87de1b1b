"""Fitting a generated image to a channel format's exact size.

A model generates at about its native area (farm.campaigns.formats.generation_size); the image is
then scaled with Lanczos until it covers the format and cropped to it around the centre ("cover",
as CSS `object-fit: cover`). Pillow's `ImageOps.fit` does exactly that, cropping first so only the
pixels that survive are resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

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


@dataclass(frozen=True)
class FormatTarget:
    """The channel format a render is delivered in: its name and exact size."""

    name: str
    width: int
    height: int

    def infotext_fields(self) -> dict[str, str]:
        return {"Channel format": self.name, "Format size": f"{self.width}x{self.height}"}


def format_target(render_params: Mapping) -> FormatTarget | None:
    """The format a render's params ask for (keys `format`, `format_width`, `format_height`, as
    farm.jobs.batch writes them), or None for a render kept at its generated size."""
    if render_params.get("format_width") is None:
        return None
    return FormatTarget(str(render_params.get("format")), int(render_params["format_width"]),
                        int(render_params["format_height"]))
