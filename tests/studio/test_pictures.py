"""The parts of a picture request and the pixel diff, without a browser.

Globals in Storybook's URL format (checked, put in one order, carried into the
full-canvas route) and :func:`studio.render.diff.compare` on pictures drawn
here with Pillow: a changed box, anti-aliased text, different sizes.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from studio.errors import InvalidRequest
from studio.render.diff import compare
from studio.render.screenshot import parse_globals, story_route

CATALOG = {
    "components": [
        {"id": "Button", "stories": [{"id": "button--primary", "exportName": "Primary"}]},
    ]
}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _page(size: tuple[int, int] = (320, 240), text: str = "Click me") -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((20, 20), text, fill="black")
    return image


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("", ""),
        ("theme:dark", "theme:dark"),
        ("theme:dark;locale:fr", "locale:fr;theme:dark"),
        ("locale:fr;theme:dark;", "locale:fr;theme:dark"),
        ("backgrounds.value:!hex(ff0000);zoom:1.5", "backgrounds.value:!hex(ff0000);zoom:1.5"),
        ("flag:!true;name:Ada+Lovelace", "flag:!true;name:Ada+Lovelace"),
        ("theme:dark;theme:light", "theme:light"),
    ],
)
def test_globals_are_checked_and_put_in_one_order(given: str, canonical: str) -> None:
    assert parse_globals(given) == canonical


@pytest.mark.parametrize(
    "bad", ["theme", ":dark", "theme:<b>", "the/me:dark", "theme:dark;x", "a:" + "b" * 600]
)
def test_bad_globals_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="globals"):
        parse_globals(bad)


def test_globals_go_into_the_full_canvas_route() -> None:
    route = story_route(CATALOG, "button--primary", "locale:fr;theme:dark")
    assert route == (
        "Button",
        "button--primary",
        "?full&globals=locale:fr;theme:dark#/Button/Primary",
    )
    assert story_route(CATALOG, "Button")[2] == "?full#/Button"


def test_equal_pictures_differ_in_no_pixel() -> None:
    found = compare(_png(_page()), _png(_page()))
    assert (found.changed_pixels, found.total_pixels, found.ratio) == (0, 320 * 240, 0.0)
    diff = Image.open(io.BytesIO(found.png))
    assert diff.size == (320, 240)


def test_a_changed_box_counts_its_pixels_and_is_drawn_red() -> None:
    changed = _page()
    ImageDraw.Draw(changed).rectangle((100, 100, 149, 139), fill="blue")  # 50 x 40
    found = compare(_png(_page()), _png(changed))
    assert found.changed_pixels == 50 * 40
    diff = Image.open(io.BytesIO(found.png)).convert("RGB")
    assert diff.getpixel((120, 120)) == (255, 0, 0)
    assert diff.getpixel((300, 220)) != (255, 0, 0)


def test_the_crop_counts_what_pixelmatch_counts_on_the_whole_picture() -> None:
    from pixelmatch.contrib.PIL import pixelmatch

    before, after = _page(text="Click me"), _page(text="Click us")
    whole = pixelmatch(before.convert("RGBA"), after.convert("RGBA"))
    assert whole > 0
    assert compare(_png(before), _png(after)).changed_pixels == whole


def test_different_sizes_count_the_padding_as_changed() -> None:
    found = compare(_png(_page((320, 240))), _png(_page((320, 300))))
    assert (found.width, found.height) == (320, 300)
    assert found.changed_pixels == 320 * 60
    assert found.total_pixels == 320 * 300


def test_what_is_no_picture_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="second picture"):
        compare(_png(_page()), b"not a png")
