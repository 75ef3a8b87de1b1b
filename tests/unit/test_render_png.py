"""A1111 infotext, PNG text chunks and thumbnails: no model needed."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from farm.errors import InvalidInput
from farm.render.params import Txt2ImgParams
from farm.render.png import THUMBNAIL_MIME_TYPE, encode_png, format_infotext, make_thumbnail, read_png_text

SHA = "45DEE52B" + "0123456789abcdef" * 3 + "01234567"


def params(**changes) -> Txt2ImgParams:
    values = dict(prompt="a lighthouse at dusk, oil painting", negative_prompt="blurry, lowres", seed=965400086,
                  steps=20, cfg_scale=7.0, width=512, height=768, sampler="DPM++ 2M Karras")
    values.update(changes)
    return Txt2ImgParams(**values)


def test_infotext_matches_a1111_layout_exactly():
    assert format_infotext(params(), "tiny-sd", SHA) == (
        "a lighthouse at dusk, oil painting\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 965400086, Size: 512x768, "
        "Model hash: 45dee52b01, Model: tiny-sd"
    )


def test_infotext_omits_empty_negative_prompt_and_keeps_fractional_cfg():
    text = format_infotext(params(negative_prompt="", cfg_scale=7.5, sampler="Euler a", seed=1,
                                  width=256, height=256), "tiny-sd", SHA)
    assert text == (
        "a lighthouse at dusk, oil painting\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 256x256, Model hash: 45dee52b01, Model: tiny-sd"
    )


def test_infotext_quotes_values_with_separators_like_a1111():
    text = format_infotext(params(), "v1-5: pruned, emaonly", SHA)
    assert text.endswith('Model hash: 45dee52b01, Model: "v1-5: pruned, emaonly"')


def test_infotext_with_empty_prompt_is_stripped_like_a1111():
    assert format_infotext(params(prompt="", negative_prompt=""), "m", SHA).startswith("Steps: 20, Sampler:")


def _image() -> Image.Image:
    image = Image.new("RGB", (40, 24))
    image.putdata([(x * 6, y * 10, (x * y) % 256) for y in range(24) for x in range(40)])
    return image


def test_png_round_trip_keeps_pixels_and_text():
    infotext = format_infotext(params(prompt="ein Leuchtturm \u2013 \u706f\u5854 \U0001f3ee"), "tiny-sd", SHA)
    farm = {"render_id": 7, "job_id": 3, "license": "CreativeML-OpenRAIL-M", "model": "tiny-sd"}
    data = encode_png(_image(), infotext, farm)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    text = read_png_text(data)
    assert text["parameters"] == infotext
    assert text["farm"] == '{"job_id":3,"license":"CreativeML-OpenRAIL-M","model":"tiny-sd","render_id":7}'
    assert json.loads(text["farm"]) == farm
    assert Image.open(io.BytesIO(data)).tobytes() == _image().tobytes()


def test_latin1_text_goes_in_plain_text_chunks():
    data = encode_png(_image(), "a cat\nSteps: 1", {"a": 1})
    assert b"tEXtparameters\x00a cat\nSteps: 1" in data
    assert b'tEXtfarm\x00{"a":1}' in data


def test_png_encoding_is_deterministic():
    assert encode_png(_image(), "x", {"b": 1, "a": 2}) == encode_png(_image(), "x", {"a": 2, "b": 1})


def test_read_png_text_refuses_other_data():
    buffer = io.BytesIO()
    _image().save(buffer, format="JPEG")
    for data in (buffer.getvalue(), b"not an image"):
        with pytest.raises(InvalidInput) as raised:
            read_png_text(data)
        assert raised.value.field == "image"


def test_thumbnail_is_webp_keeps_aspect_and_never_upscales():
    assert THUMBNAIL_MIME_TYPE == "image/webp"
    big = Image.new("RGB", (1024, 512), (200, 30, 30))
    thumb = Image.open(io.BytesIO(make_thumbnail(big)))
    assert thumb.format == "WEBP"
    assert thumb.size == (256, 128)
    tall = Image.open(io.BytesIO(make_thumbnail(Image.new("RGB", (300, 900)), max_side=90)))
    assert tall.size == (30, 90)
    small = Image.open(io.BytesIO(make_thumbnail(_image())))
    assert small.size == (40, 24)


def test_thumbnail_refuses_bad_size():
    with pytest.raises(InvalidInput) as raised:
        make_thumbnail(_image(), max_side=0)
    assert raised.value.field == "max_side"
