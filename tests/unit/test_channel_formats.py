"""Channel formats: the configs/channels.yaml loader, the generation-size math, and the resize to
the exact format."""

import math

import pytest
from PIL import Image

from farm.campaigns.formats import (
    CHANNELS_FILE, generation_size, load_channel_formats, native_size, resolve_formats, side_multiple,
)
from farm.errors import InvalidInput
from farm.render.params import Txt2ImgParams
from farm.render.png import format_infotext
from farm.render.resize import cover, format_target

REQUIRED = {
    "instagram_square": (1080, 1080), "instagram_portrait": (1080, 1350), "instagram_story": (1080, 1920),
    "facebook_link": (1200, 628), "linkedin": (1200, 627), "youtube_thumbnail": (1280, 720),
    "display_mrec": (300, 250), "display_leaderboard": (728, 90), "pinterest_pin": (1000, 1500),
}


def test_the_shipped_file_has_the_formats_campaigns_need():
    formats = load_channel_formats()
    for name, size in REQUIRED.items():
        assert (formats[name].width, formats[name].height) == size
        assert formats[name].label
    assert formats["instagram_story"].to_dict() == {
        "name": "instagram_story", "label": formats["instagram_story"].label, "width": 1080, "height": 1920}


@pytest.mark.parametrize("text, key", [
    ("square:\n  label: Square\n  height: 100\n", "square.width"),
    ("square:\n  label: Square\n  width: wide\n  height: 100\n", "square.width"),
    ("square:\n  label: Square\n  width: 100\n  height: 0\n", "square.height"),
    ("square:\n  label: Square\n  width: 100\n  height: 9000\n", "square.height"),
    ("square:\n  label: Square\n  width: true\n  height: 100\n", "square.width"),
    ("square:\n  width: 100\n  height: 100\n", "square.label"),
    ("square:\n  label: S\n  width: 100\n  height: 100\n  depth: 3\n", "square.depth"),
    ("Square Post:\n  label: S\n  width: 100\n  height: 100\n", "Square Post"),
    ("square: 100x100\n", "square"),
])
def test_a_bad_entry_is_named_with_its_file_and_key(tmp_path, text, key):
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_channel_formats(path)
    assert caught.value.field == f"{path}: {key}"


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "square: [unclosed\n"])
def test_a_file_that_is_not_a_mapping_of_formats_is_named(tmp_path, text):
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_channel_formats(path)
    assert caught.value.field == str(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        load_channel_formats(tmp_path / "nope.yaml")
    assert caught.value.field == str(tmp_path / "nope.yaml")


def test_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text("a:\n  label: A\n  width: 10\n  height: 10\n")
    assert list(load_channel_formats(path)) == ["a"]
    path.write_text("b:\n  label: B\n  width: 20\n  height: 10\n")
    import os
    os.utime(path, ns=(1, 10**18))  # a different modification time, whatever the clock's resolution
    assert list(load_channel_formats(path)) == ["b"]


def test_resolve_formats_keeps_order_and_refuses_unknown_or_repeated_names():
    assert [f.name for f in resolve_formats(["linkedin", "instagram_square"])] == ["linkedin", "instagram_square"]
    for names in (["tiktok"], ["linkedin", "linkedin"], "linkedin", [3]):
        with pytest.raises(InvalidInput) as caught:
            resolve_formats(names, field="channel_formats")
        assert caught.value.field == "channel_formats"


@pytest.mark.parametrize("architecture", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_generation_size_keeps_the_models_area_and_the_formats_shape(architecture, name):
    width, height = REQUIRED[name]
    base = native_size(architecture)
    multiple = side_multiple(architecture)
    gen_w, gen_h = generation_size(width, height, base_width=base[0], base_height=base[1], multiple=multiple)
    assert gen_w % multiple == 0 and gen_h % multiple == 0
    assert 64 <= gen_w <= 2048 and 64 <= gen_h <= 2048
    # About the native area (within 10%) ...
    assert abs(gen_w * gen_h / (base[0] * base[1]) - 1) < 0.10
    # ... at the format's aspect ratio, clamped to 1:4..4:1, as closely as the multiple allows.
    target = min(max(width / height, 0.25), 4.0)
    tolerance = 0.015 if multiple == 8 else 0.05
    assert abs(math.log(gen_w / gen_h / target)) < tolerance


def test_generation_size_examples():
    assert native_size("sd1") == (512, 512) and native_size("sd2") == (768, 768) and native_size("sdxl") == (1024, 1024)
    assert side_multiple("sd1") == 8 and side_multiple("sdxl") == 64
    assert generation_size(1080, 1080, base_width=512, base_height=512) == (512, 512)
    assert generation_size(1080, 1920, base_width=512, base_height=512) == (384, 680)
    assert generation_size(1080, 1920, base_width=1024, base_height=1024, multiple=64) == (768, 1344)
    # 728x90 is past 4:1: generated at 4:1, cropped afterwards.
    assert generation_size(728, 90, base_width=512, base_height=512) == (1024, 256)
    # A small base area (a size override) still keeps each side at least 64.
    assert generation_size(728, 90, base_width=64, base_height=64) == (256, 64)
    assert generation_size(1080, 1920, base_width=64, base_height=64) == (64, 112)
    # A large one keeps each side at most 2048.
    assert generation_size(728, 90, base_width=2048, base_height=2048) == (2048, 512)
    with pytest.raises(InvalidInput):
        generation_size(100, 100, base_width=512, base_height=512, multiple=48)
    with pytest.raises(InvalidInput):
        native_size("upscaler")


def _bands(width: int, height: int) -> Image.Image:
    """Red left third, green middle, blue right third."""
    image = Image.new("RGB", (width, height), (0, 255, 0))
    image.paste((255, 0, 0), (0, 0, width // 3, height))
    image.paste((0, 0, 255), (width - width // 3, 0, width, height))
    return image


def test_cover_resizes_and_crops_the_centre_to_the_exact_size():
    wide = _bands(1024, 256)
    fitted = cover(wide, 728, 90)
    assert fitted.size == (728, 90)
    # Cropped from the middle of a 4:1 image to 8:1: the outer bands are partly cut, the centre stays.
    assert fitted.getpixel((364, 45)) == (0, 255, 0)
    tall = cover(_bands(384, 680), 1080, 1920)
    assert tall.size == (1080, 1920)
    assert cover(wide, 1024, 256) is wide  # already the right size: untouched
    square = cover(_bands(300, 300), 100, 300)  # portrait crop of a square keeps the green centre only
    assert square.getpixel((0, 150))[1] > 200 and square.getpixel((99, 150))[1] > 200
    with pytest.raises(InvalidInput):
        cover(wide, 0, 90)


def test_format_target_and_infotext_note_the_format():
    assert format_target({"width": 64, "height": 64}) is None
    target = format_target({"format": "linkedin", "format_width": 1200, "format_height": 627})
    assert (target.name, target.width, target.height) == ("linkedin", 1200, 627)
    params = Txt2ImgParams(prompt="a shoe", negative_prompt="", seed=1, steps=2, cfg_scale=7.0,
                           width=704, height=368, sampler="Euler")
    text = format_infotext(params, "tiny-sd", "ab" * 32, extra=target.infotext_fields())
    assert "Size: 704x368" in text  # the generation size: what reproduces the image
    assert text.endswith("Channel format: linkedin, Format size: 1200x627")
    assert CHANNELS_FILE.name == "channels.yaml"
