"""An invisible watermark in the pixels: the dwtDct method of `invisible-watermark` (imwatermark).

The algorithm is imwatermark's `dwtDct` (its EmbedMaxDct with the default scales [0, 36, 36] and
4x4 blocks), the one Stable Diffusion's own scripts use: convert the image to YUV (OpenCV's
BGR2YUV coefficients), take one level of the Haar wavelet transform of the U channel, cut its
approximation band into 4x4 blocks and, in each block, quantise the largest coefficient but the
first to an odd or even quarter of the step 36 for a 1 or a 0. Block n carries bit n modulo the
payload's length, so every bit is repeated all over the image; decoding averages the repeats.
(imwatermark's channel loop stops before V, so only U carries bits; we do the same, to stay
readable by it and able to read its images.)

Written here on numpy alone, because invisible-watermark 0.2.0 requires `opencv-python` (the GUI
build: a 74 MB wheel, 392 MB installed, Qt and FFmpeg inside, and it needs the system's
libGL.so.1, which GPU server images usually lack) and imports torch, for what is one colour
conversion. Decoding is the package's, so each reads the other's watermark
(bench/watermark_check.py checks both directions against the real package). Embedding differs in
three ways, each for a cleaner or more readable image: the coefficient is moved to the nearest
level that spells its bit *and keeps it the block's largest* (the package's choice lets another
coefficient take the lead in about half the blocks of a smooth image, and then the package fails
to read its own 64-bit payload back); the inverse wavelet transform is the exact one (the package
passes the horizontal and vertical detail bands swapped, which moves chroma between neighbouring
pixels: 24 dB PSNR on busy images); and values are rounded rather than truncated.

Limits (bench/watermark_check.py, docs/performance.md): an image needs at least 256x256 pixels of
area (the package refuses less: too few repeats of each bit). The mark survives lossless
re-encoding, brightness changes and JPEG without chroma subsampling (4:4:4) down to quality 90;
it does not survive JPEG with chroma subsampling (4:2:0, most encoders' default, even at quality
98), resizing, cropping, rotating or mirroring, which blur U or move the block grid. It tells
which render of which farm a PNG is; it is no defence against someone who wants it gone (the
signed C2PA manifest is what proves provenance).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from farm.errors import InvalidInput
from farm.provenance.payload import PAYLOAD_BITS, Watermark, parse_payload

SCALE = 36.0           # imwatermark's default scale for the U channel
BLOCK = 4              # block side in the approximation band (an 8x8 pixel area)
MIN_PIXELS = 256 * 256  # imwatermark's own floor: fewer pixels repeat each bit too few times
# How far (in approximation-band units) a marked coefficient stays above the block's others:
# the decoder's 8-bit rounding moves coefficients by up to about 2.
RUNNER_UP_MARGIN = 4.0

# OpenCV's RGB <-> YUV (COLOR_BGR2YUV, COLOR_YUV2BGR) coefficients.
_Y_FROM_RGB = np.array([0.299, 0.587, 0.114])
_U_FROM_B_MINUS_Y = 0.492
_B_FROM_U = 2.032
_G_FROM_U = -0.395


def large_enough(image: Image.Image) -> bool:
    return image.width * image.height >= MIN_PIXELS


def embed(image: Image.Image, data: bytes) -> Image.Image:
    """A copy of `image` (RGB) carrying `data` in its U channel."""
    if not large_enough(image):
        raise InvalidInput("watermark", f"a {image.width}x{image.height} image is too small for dwtDct "
                                        f"(at least {MIN_PIXELS} pixels, e.g. 256x256)")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    u = _u_channel(rgb[:height, :width])
    approximation = _haar_approximation(u)
    blocks = _blocks(approximation)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    wanted = bits[np.arange(len(blocks)) % len(bits)]
    position, value = _largest_coefficient(blocks)
    marked = _quantised(np.abs(value), wanted, _runner_up(blocks, position))
    delta_blocks = np.zeros_like(blocks)
    delta_blocks[np.arange(len(blocks)), position] = np.copysign(marked, value) - value
    # Inverse Haar with only the approximation band changed: each of the 2x2 pixels behind a
    # coefficient moves by half the coefficient's change.
    delta_u = np.repeat(np.repeat(_unblocks(delta_blocks, approximation.shape), 2, axis=0), 2, axis=1) / 2
    out = rgb.copy()
    # YUV -> RGB with only U changed: R does not depend on U.
    out[:height, :width, 2] += _B_FROM_U * delta_u
    out[:height, :width, 1] += _G_FROM_U * delta_u
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def extract_bits(image: Image.Image, length: int) -> np.ndarray:
    """The `length` bits repeated over the image, each the majority of its repeats."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    # The decoder sees what OpenCV's 8-bit conversion gives: U rounded to whole numbers.
    u = np.clip(np.rint(_u_channel(rgb[:height, :width])), 0, 255)
    blocks = _blocks(_haar_approximation(u))
    _, value = _largest_coefficient(blocks)
    scores = (np.abs(value) % SCALE) > 0.5 * SCALE
    index = np.arange(len(blocks)) % length
    ones = np.bincount(index, weights=scores, minlength=length)
    counts = np.bincount(index, minlength=length)
    return (ones / np.maximum(counts, 1) * 255 > 127).astype(np.uint8)


def decode(image: Image.Image) -> Watermark | None:
    """The farm watermark in `image`, or None (no watermark, another one, or too damaged)."""
    if not large_enough(image):
        return None
    return parse_payload(np.packbits(extract_bits(image, PAYLOAD_BITS)).tobytes())


def _u_channel(rgb: np.ndarray) -> np.ndarray:
    y = rgb @ _Y_FROM_RGB
    return (rgb[..., 2] - y) * _U_FROM_B_MINUS_Y + 128.0


def _haar_approximation(channel: np.ndarray) -> np.ndarray:
    """The approximation band of one level of the 2D Haar transform (pywt.dwt2's cA)."""
    return (channel[0::2, 0::2] + channel[0::2, 1::2] + channel[1::2, 0::2] + channel[1::2, 1::2]) / 2


def _blocks(band: np.ndarray) -> np.ndarray:
    """The band's BLOCKxBLOCK blocks in row-major order, each flattened: (count, BLOCK*BLOCK)."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    trimmed = band[:rows * BLOCK, :cols * BLOCK]
    return trimmed.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(rows * cols, BLOCK * BLOCK)


def _unblocks(blocks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = shape[0] // BLOCK, shape[1] // BLOCK
    band = np.zeros(shape)
    band[:rows * BLOCK, :cols * BLOCK] = (blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3)
                                          .reshape(rows * BLOCK, cols * BLOCK))
    return band


def _quantised(magnitude: np.ndarray, bits: np.ndarray, runner_up: np.ndarray) -> np.ndarray:
    """The magnitude each block's largest coefficient gets: in the quarter of a step that spells
    its bit, and still the block's largest by RUNNER_UP_MARGIN.

    imwatermark takes the level of that quarter in the coefficient's own step, which lowers the
    coefficient about half the time; in an image's smooth parts the block's coefficients are
    close, so another one becomes the largest and the decoder reads that one instead: about half
    the blocks of a typical render, too many for a 64-bit payload to read back. Taking the
    nearest level, one step down, the same or one step up, that keeps it the largest changes
    nothing for the decoder (it reads the quarter) and costs little more distortion.
    """
    level = (magnitude // SCALE + 0.25 + 0.5 * bits) * SCALE
    candidates = np.stack([level - SCALE, level, level + SCALE], axis=1)
    keeps_lead = (candidates >= (runner_up + RUNNER_UP_MARGIN)[:, None]) & (candidates >= 0)
    cost = np.where(keeps_lead, np.abs(candidates - magnitude[:, None]), np.inf)
    return candidates[np.arange(len(candidates)), np.argmin(cost, axis=1)]


def _runner_up(blocks: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Per block: the largest magnitude among the coefficients the decoder compares, but the chosen one."""
    magnitudes = np.abs(blocks[:, 1:]).copy()
    magnitudes[np.arange(len(blocks)), position - 1] = -np.inf
    return magnitudes.max(axis=1)


def _largest_coefficient(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block: where the largest coefficient by magnitude is, leaving out the first, and its value."""
    position = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
    return position, blocks[np.arange(len(blocks)), position]
