"""PNG surgery for the provenance tests: change a file's pixels or text after it was signed, the
way someone editing it by hand would, keeping every other chunk (the C2PA manifest included)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from farm.settings import load_settings


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, in order."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found, position = [], 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position:position + 4])
        found.append((png[position + 4:position + 8], png[position + 8:position + 8 + length]))
        position += 12 + length
    return found


def assemble(parts: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in parts:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return bytes(out)


def with_pixel_changed(png: bytes, offset: int = 1000) -> bytes:
    """The same file with one byte of the image data changed (a valid PNG, one pixel off)."""
    parts = chunks(png)
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT")))
    raw[offset] ^= 0x40
    out, placed = [], False
    for kind, body in parts:
        if kind != b"IDAT":
            out.append((kind, body))
        elif not placed:
            out.append((kind, zlib.compress(bytes(raw))))
            placed = True
    tampered = assemble(out)
    with Image.open(io.BytesIO(tampered)) as image:
        image.load()  # still a readable image
    return tampered


def with_text_replaced(png: bytes, old: bytes, new: bytes) -> bytes:
    parts = [(kind, body.replace(old, new) if kind in (b"tEXt", b"iTXt") else body) for kind, body in chunks(png)]
    return assemble(parts)


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def signing_settings(files, **extra: str):
    return load_settings({"FARM_HOME": str(files.chain.parent / "home"), **files.environ(**extra)})
