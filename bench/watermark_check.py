"""The farm's dwtDct watermark (farm.provenance.watermark): does it read back, does the real
invisible-watermark package read it (and the other way round), what survives, what it costs.

    .venv/bin/python bench/watermark_check.py

Compared with the package when `imwatermark` can be imported. The farm does not depend on it (it
requires the GUI build of OpenCV); to run the comparison, install it beside, not into, the venv:

    .venv/bin/pip install --target /tmp/iwm --no-deps invisible-watermark==0.2.0 \
        opencv-python-headless pywavelets
    PYTHONPATH=/tmp/iwm .venv/bin/python bench/watermark_check.py

Prints one line per check; "RESULT" lines are the figures docs/performance.md quotes.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farm.provenance import watermark  # noqa: E402
from farm.provenance.payload import PAYLOAD_BITS, Watermark, payload  # noqa: E402

try:
    import cv2
    from imwatermark import WatermarkDecoder, WatermarkEncoder
except ImportError:  # the comparison is optional
    cv2 = None


def test_images(size: int) -> dict[str, Image.Image]:
    """Stand-ins for renders: smooth (a sky), busy (foliage) and a mix."""
    rng = np.random.default_rng(size)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([80 + 120 * y, 120 + 60 * x, 200 - 90 * y], axis=-1)
    busy = rng.normal(128, 50, (size, size, 3))
    fractal = np.asarray(Image.effect_mandelbrot((size, size), (-2, -1.5, 1, 1.5), 60).convert("RGB"), float)
    mixed = 0.6 * smooth + 0.4 * fractal
    return {name: Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
            for name, a in {"smooth": smooth, "busy": busy, "mixed": mixed}.items()}


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, float) - np.asarray(b, float)
    return 10 * np.log10(255 ** 2 / max(np.mean(diff ** 2), 1e-12))


def jpeg(image: Image.Image, quality: int, subsampling: str = "4:2:0") -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


ATTACKS = {
    "png re-save": lambda im: Image.open(io.BytesIO(_png(im))).convert("RGB"),
    "jpeg q95 4:4:4": lambda im: jpeg(im, 95, "4:4:4"),
    "jpeg q90 4:4:4": lambda im: jpeg(im, 90, "4:4:4"),
    "jpeg q75 4:4:4": lambda im: jpeg(im, 75, "4:4:4"),
    "jpeg q98 4:2:0 (chroma subsampled, most encoders' default)": lambda im: jpeg(im, 98),
    "jpeg q90 4:2:0": lambda im: jpeg(im, 90),
    "brightness +10%": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "resize 50% and back": lambda im: im.resize((im.width // 2, im.height // 2)).resize(im.size),
    "crop 8 px": lambda im: im.crop((8, 8, im.width, im.height)),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def package_encode(image: Image.Image, data: bytes) -> Image.Image:
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", data)
    bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    return Image.fromarray(cv2.cvtColor(encoder.encode(bgr, "dwtDct"), cv2.COLOR_BGR2RGB))


def package_decode(image: Image.Image) -> bytes:
    decoder = WatermarkDecoder("bytes", PAYLOAD_BITS)
    return decoder.decode(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR), "dwtDct")


def main() -> None:
    data = payload("RF", 123456)
    expected = Watermark("RF", 123456)
    print(f"payload {data.hex()} ({PAYLOAD_BITS} bits); imwatermark "
          f"{'present: comparing' if cv2 is not None else 'absent: no comparison'}")
    survived: dict[str, int] = {name: 0 for name in ATTACKS}
    total = 0
    for size in (256, 512, 1024):
        for name, image in test_images(size).items():
            total += 1
            marked = watermark.embed(image, data)
            line = [f"{size}x{size} {name}: reads back {watermark.decode(marked) == expected}",
                    f"PSNR {psnr(image, marked):.1f} dB"]
            if cv2 is not None:
                theirs = package_encode(image, data)
                line += [f"package reads ours {package_decode(marked) == data}",
                         f"package reads its own {package_decode(theirs) == data}",
                         f"we read the package's {watermark.decode(theirs) == expected}",
                         f"package PSNR {psnr(image, theirs):.1f} dB"]
            print("; ".join(line))
            for attack, apply in ATTACKS.items():
                survived[attack] += watermark.decode(apply(marked)) == expected
    for attack, count in survived.items():
        print(f"RESULT survives {attack}: {count}/{total} images")
    for size in (512, 1024):
        image = test_images(size)["mixed"]
        start = time.perf_counter()
        for _ in range(5):
            marked = watermark.embed(image, data)
        embed_ms = (time.perf_counter() - start) / 5 * 1000
        start = time.perf_counter()
        for _ in range(5):
            watermark.decode(marked)
        decode_ms = (time.perf_counter() - start) / 5 * 1000
        print(f"RESULT {size}x{size}: embed {embed_ms:.1f} ms, decode {decode_ms:.1f} ms")


if __name__ == "__main__":
    main()
