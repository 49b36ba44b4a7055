"""The visual diff of two pictures of a story: changed pixels and a diff PNG.

Pixels are compared by pixelmatch (the Python port of mapbox/pixelmatch: a
perceptual colour distance with a threshold, anti-aliased pixels detected and
not counted), the pictures decoded and drawn with Pillow.

pixelmatch is pure Python, a few microseconds a pixel: on the whole of a
1024x768 picture that is seconds. Only the box around the pixels that differ
at all (Pillow's difference, in C) is handed to it, with a margin wide enough
that its anti-aliasing check (each pixel's neighbours and theirs) sees what it
would see in the whole picture; everything outside the box is equal in both.

Pictures of different sizes (a story that grew) are compared on the area they
share; the rest of the larger one counts as changed, drawn in the diff colour.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageChops
from pixelmatch.contrib.PIL import pixelmatch

from studio.errors import InvalidRequest

__all__ = ["DIFF_COLOR", "THRESHOLD", "PictureDiff", "compare"]

# pixelmatch's own defaults: colour distance threshold (0 to 1, smaller is stricter)
# and how faint the unchanged picture is drawn under the changes.
THRESHOLD = 0.1
_ALPHA = 0.1
DIFF_COLOR = (255, 0, 0)
# Pixels around the differing box that pixelmatch's anti-aliasing check reads
# (a pixel's neighbours, and their neighbours), plus one.
_MARGIN = 3


@dataclass(frozen=True)
class PictureDiff:
    """How two pictures differ: pixels counted changed out of the larger area, and a PNG
    (the first picture faint in grey, changed pixels red, anti-aliased ones yellow)."""

    changed_pixels: int
    total_pixels: int
    width: int
    height: int
    png: bytes

    @property
    def ratio(self) -> float:
        return self.changed_pixels / self.total_pixels if self.total_pixels else 0.0


def _decode(picture: bytes, which: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(picture))
        return image.convert("RGBA")
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"the {which} picture is not an image Pillow reads: {exc}") from exc


def _faint(image: Image.Image) -> Image.Image:
    """``image`` as pixelmatch draws unchanged pixels: grey, blended towards white."""
    grey = image.convert("L").point(lambda v: round(255 + (v - 255) * _ALPHA))
    return Image.merge("RGBA", (grey, grey, grey, Image.new("L", image.size, 255)))


def compare(before: bytes, after: bytes, *, threshold: float = THRESHOLD) -> PictureDiff:
    """Compare two PNGs (see the module docstring)."""
    first, second = _decode(before, "first"), _decode(after, "second")
    width, height = max(first.width, second.width), max(first.height, second.height)
    shared_w, shared_h = min(first.width, second.width), min(first.height, second.height)
    one = first.crop((0, 0, shared_w, shared_h))
    two = second.crop((0, 0, shared_w, shared_h))

    out = Image.new("RGBA", (width, height), (*DIFF_COLOR, 255))
    out.paste(_faint(one), (0, 0))
    changed = width * height - shared_w * shared_h
    box = ImageChops.difference(one, two).getbbox(alpha_only=False)
    if box is not None:
        left, top, right, bottom = box
        box = (
            max(0, left - _MARGIN),
            max(0, top - _MARGIN),
            min(shared_w, right + _MARGIN),
            min(shared_h, bottom + _MARGIN),
        )
        part_one, part_two = one.crop(box), two.crop(box)
        drawn = Image.new("RGBA", part_one.size)
        changed += pixelmatch(
            part_one, part_two, drawn, threshold=threshold, alpha=_ALPHA, diff_color=DIFF_COLOR
        )
        out.paste(drawn, box[:2])
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return PictureDiff(changed, width * height, width, height, buffer.getvalue())
