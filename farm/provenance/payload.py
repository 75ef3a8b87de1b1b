"""What the farm's watermark says: this farm's id and the render id, with a checksum.

Kept apart from farm.provenance.watermark (numpy) so that settings can check a farm id cheaply.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

METHOD = "dwtDct"

# The payload: a farm id of two ASCII characters, the render id (32 bits, big-endian), and a
# CRC-32 of both cut to 16 bits, so a decoder tells a farm watermark from the noise it reads in
# any other image (a random image passes with probability 1/65536).
PAYLOAD_BYTES = 8
PAYLOAD_BITS = PAYLOAD_BYTES * 8
FARM_ID_LENGTH = 2


@dataclass(frozen=True)
class Watermark:
    farm_id: str
    render_id: int

    def to_dict(self) -> dict:
        return {"method": METHOD, "farm_id": self.farm_id, "render_id": self.render_id}


def check_farm_id(farm_id: str) -> str:
    if len(farm_id) != FARM_ID_LENGTH or not farm_id.isascii() or not farm_id.isprintable():
        raise ValueError(f"must be {FARM_ID_LENGTH} printable ASCII characters, e.g. RF")
    return farm_id


def payload(farm_id: str, render_id: int) -> bytes:
    """The bytes hidden in a render's pixels: farm id, render id (its low 32 bits), checksum."""
    body = check_farm_id(farm_id).encode("ascii") + struct.pack(">I", render_id & 0xFFFFFFFF)
    return body + struct.pack(">H", zlib.crc32(body) & 0xFFFF)


def parse_payload(data: bytes) -> Watermark | None:
    """The watermark these bytes spell, or None when the checksum says they are not ours."""
    if len(data) != PAYLOAD_BYTES:
        return None
    body, check = data[:-2], struct.unpack(">H", data[-2:])[0]
    if zlib.crc32(body) & 0xFFFF != check:
        return None
    farm_id = body[:FARM_ID_LENGTH].decode("ascii", errors="replace")
    return Watermark(farm_id=farm_id, render_id=struct.unpack(">I", body[FARM_ID_LENGTH:])[0])
