"""PNG files with provenance text, in AUTOMATIC1111's "parameters" layout, and thumbnails.

The "parameters" text is what A1111 writes (modules/processing.py `create_infotext`): the
prompt, a "Negative prompt: ..." line when there is one, then "Key: value" pairs joined by ", ",
where a value holding ",", ":" or a newline is JSON-quoted (modules/infotext_utils.py `quote`).
Tools that read A1111 PNG info (A1111's own "PNG Info" tab, civitai, ComfyUI loaders) read ours.

Text is stored in a tEXt chunk when it is Latin-1, and in an iTXt (UTF-8) chunk otherwise, as
Pillow (and A1111 through Pillow) does; readers see the same key either way.
"""

from __future__ import annotations

import io
import json

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from farm.errors import InvalidInput
from farm.render.params import Txt2ImgParams

PARAMETERS_KEY = "parameters"
FARM_KEY = "farm"
MODEL_HASH_LENGTH = 10  # A1111's "short hash": the first 10 hex digits of the file's sha256

THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_MIME_TYPE = "image/webp"
THUMBNAIL_QUALITY = 80


def format_infotext(params: Txt2ImgParams, model_name: str, model_sha256: str,
                    extra: dict[str, object] | None = None) -> str:
    """A1111's infotext for one image (use that image's own seed in `params`).

    `extra` pairs follow the generation fields, as A1111's extensions add theirs (the farm notes a
    channel format there: "Channel format: instagram_story, Format size: 1080x1920").
    """
    fields = {
        "Steps": params.steps,
        "Sampler": params.sampler,
        "CFG scale": _format_number(params.cfg_scale),
        "Seed": params.seed,
        "Size": f"{params.width}x{params.height}",
        "Model hash": model_sha256[:MODEL_HASH_LENGTH].lower() if model_sha256 else None,
        "Model": model_name or None,
        **(extra or {}),
    }
    generation = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    negative = f"\nNegative prompt: {params.negative_prompt}" if params.negative_prompt else ""
    return f"{params.prompt}{negative}\n{generation}".strip()


def encode_png(image: Image.Image, infotext: str, farm_metadata: dict) -> bytes:
    """PNG bytes with text chunks "parameters" (infotext) and "farm" (compact, sorted JSON)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)
    info.add_text(FARM_KEY, json.dumps(farm_metadata, separators=(",", ":"), sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    _as_rgb(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_png_text(data: bytes) -> dict[str, str]:
    """All text chunks (tEXt, zTXt, iTXt) of a PNG, by key."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise InvalidInput("image", f"expected a PNG, got {image.format}")
            image.load()  # text chunks after the image data are read only now
            return {str(key): str(value) for key, value in image.text.items()}
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InvalidInput("image", f"not a readable PNG: {error}") from None


def make_thumbnail(image: Image.Image, max_side: int = 256) -> bytes:
    """A WebP (see THUMBNAIL_MIME_TYPE) whose longer side is at most `max_side`, same aspect.

    Images already small enough keep their size; thumbnails never upscale.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InvalidInput("max_side", f"must be a whole number of at least 1, got {max_side!r}")
    thumbnail = _as_rgb(image).copy()
    thumbnail.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format=THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, method=4)
    return buffer.getvalue()


def _format_number(value: float) -> int | float:
    """7.0 -> 7 and 7.5 -> 7.5, as A1111's UI writes CFG scale ("CFG scale: 7")."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _quote(value: object) -> str:
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _as_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
