"""What provenance adds to a worker's per-image cost: the PNG encode alone (baseline), then the
dwtDct watermark, then the C2PA signature (farm.provenance), as the worker's _store does them.

    .venv/bin/python bench/provenance_cost.py [--repeats N]

Signs with a throwaway CA made on the spot (tests/fixtures/certificates.py), ES256.
Prints one RESULT line per size and step; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farm.provenance import watermark  # noqa: E402
from farm.provenance.manifest import GenerationFacts, ManifestSigner  # noqa: E402
from farm.provenance.payload import payload  # noqa: E402
from farm.render.png import encode_png  # noqa: E402
from farm.settings import load_settings  # noqa: E402
from tests.fixtures.certificates import write_signing_files  # noqa: E402

INFOTEXT = "a lighthouse at dusk\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
FACTS = GenerationFacts(render_id=1, job_id=1, campaign_id=1, kind="txt2img", models=[
    {"name": "tiny-sd", "kind": "checkpoint", "sha256": "ab" * 32, "license": "Apache-2.0"}])


def render_like(size: int) -> Image.Image:
    rng = np.random.default_rng(size)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([60 + 150 * y, 100 + 80 * x, 210 - 120 * y], axis=-1) + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def timed(function, repeats: int) -> float:
    function()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = write_signing_files(Path(folder))
        settings = load_settings({"FARM_HOME": folder, **files.environ()})
        start = time.perf_counter()
        signer = ManifestSigner.from_settings(settings)
        print(f"RESULT signer built and checked once per worker: {(time.perf_counter() - start) * 1000:.1f} ms")
        for size in (512, 1024):
            image = render_like(size)
            png = encode_png(image, INFOTEXT, {"render_id": 1})
            encode = timed(lambda: encode_png(image, INFOTEXT, {"render_id": 1}), args.repeats)
            mark = timed(lambda: watermark.embed(image, payload("RF", 1)), args.repeats)
            sign = timed(lambda: signer.sign_png(png, FACTS), args.repeats)
            signed = signer.sign_png(png, FACTS)
            print(f"RESULT {size}x{size} ({len(png) / 1e6:.2f} MB PNG): encode_png {encode:.1f} ms (baseline); "
                  f"+ watermark {mark:.1f} ms; + C2PA sign {sign:.1f} ms; "
                  f"file +{len(signed) - len(png)} bytes")


if __name__ == "__main__":
    main()
