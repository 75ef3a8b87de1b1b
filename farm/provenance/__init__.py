"""Provenance in every image: a signed C2PA manifest (farm.provenance.manifest), an optional
invisible watermark (farm.provenance.watermark), and reading both back (farm.provenance.reading,
`farm provenance show`).

A worker builds one ProvenanceStamp at start-up (farm.queue.runtime) and, for every render, hides
the watermark in the pixels, writes the PNG with its text chunks, then signs the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from farm.render.png import encode_png
from farm.settings import Settings

if TYPE_CHECKING:
    from farm.provenance.manifest import ManifestSigner


@dataclass(frozen=True)
class ProvenanceStamp:
    """What a worker adds to each image: a watermark (when `watermark_farm_id` is set) and a
    signed manifest (when `signer` is set)."""

    signer: "ManifestSigner | None" = None
    watermark_farm_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProvenanceStamp | None":
        """None when the settings ask for neither. Raises SettingsError naming a bad setting."""
        signer = None
        if settings.c2pa_signing:
            from farm.provenance.manifest import ManifestSigner

            signer = ManifestSigner.from_settings(settings)
        farm_id = settings.watermark_farm_id if settings.watermark == "dwtDct" else None
        if signer is None and farm_id is None:
            return None
        return cls(signer=signer, watermark_farm_id=farm_id)

    def encode(self, image: Image.Image, infotext: str, farm_chunk: dict, plan) -> tuple[Image.Image, bytes]:
        """(the image as stored, its PNG bytes) for a worker's RenderPlan: watermarked pixels,
        text chunks, then the signature over all of it (the signature must come last)."""
        if self.watermark_farm_id is not None:
            image, farm_chunk = self._watermark(image, farm_chunk, plan.render_id)
        png = encode_png(image, infotext, farm_chunk)
        if self.signer is not None:
            from farm.provenance.manifest import GenerationFacts

            png = self.signer.sign_png(png, GenerationFacts.of_plan(plan))
        return image, png

    def _watermark(self, image: Image.Image, farm_chunk: dict, render_id: int) -> tuple[Image.Image, dict]:
        from farm.provenance.payload import METHOD, Watermark, payload
        from farm.provenance.watermark import MIN_PIXELS, embed, large_enough

        if not large_enough(image):
            return image, {**farm_chunk, "watermark": {"method": METHOD, "skipped": f"under {MIN_PIXELS} pixels"}}
        marked = embed(image, payload(self.watermark_farm_id, render_id))
        return marked, {**farm_chunk, "watermark": Watermark(self.watermark_farm_id, render_id).to_dict()}
