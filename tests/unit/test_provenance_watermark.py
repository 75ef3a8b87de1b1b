"""The dwtDct watermark (farm.provenance.watermark): round trip, payload, and the limits the
module's docstring and README state."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from farm.errors import InvalidInput
from farm.provenance import watermark
from farm.provenance.payload import PAYLOAD_BYTES, Watermark, parse_payload, payload


def _render_like(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A stand-in for a render: smooth gradients (a sky) under some texture."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([60 + 150 * y / height, 100 + 80 * x / width, 210 - 120 * y / height], axis=-1)
    texture = rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(0.8))


def _reencoded(image: Image.Image, **save) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, **save)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_payload_round_trips_and_its_checksum_rejects_noise():
    data = payload("RF", 123456)
    assert len(data) == PAYLOAD_BYTES
    assert parse_payload(data) == Watermark("RF", 123456)
    flipped = bytes([data[0] ^ 1]) + data[1:]
    assert parse_payload(flipped) is None
    assert parse_payload(b"\x00" * PAYLOAD_BYTES) is None


@pytest.mark.parametrize("size", [(256, 256), (512, 512), (640, 384)])
def test_a_watermarked_image_decodes_to_its_farm_and_render(size):
    image = _render_like(size)
    marked = watermark.embed(image, payload("AC", 4242))
    assert marked.size == image.size
    assert watermark.decode(marked) == Watermark("AC", 4242)
    # Lossless re-encoding keeps it: what a PNG delivered by the farm carries.
    assert watermark.decode(_reencoded(marked, format="PNG")) == Watermark("AC", 4242)
    # Invisible: the pixels move little (PSNR well above 35 dB).
    mse = np.mean((np.asarray(image, float) - np.asarray(marked, float)) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 35


def test_an_unmarked_image_has_no_watermark():
    assert watermark.decode(_render_like((512, 512), seed=3)) is None


def test_images_under_256x256_pixels_are_too_small():
    small = _render_like((200, 200))
    with pytest.raises(InvalidInput) as caught:
        watermark.embed(small, payload("RF", 1))
    assert caught.value.field == "watermark"
    assert watermark.decode(small) is None


def test_documented_limits_jpeg_444_survives_chroma_subsampling_and_resizing_do_not():
    marked = watermark.embed(_render_like((512, 512)), payload("RF", 99))
    expected = Watermark("RF", 99)
    assert watermark.decode(_reencoded(marked, format="JPEG", quality=95, subsampling="4:4:4")) == expected
    assert watermark.decode(_reencoded(marked, format="JPEG", quality=95, subsampling="4:2:0")) != expected
    assert watermark.decode(marked.resize((256, 256)).resize((512, 512))) != expected
