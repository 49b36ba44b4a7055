"""The render verdict of an edit and the node's browser that makes it (see browser.py)."""

from studio.render.browser import CHROMIUM_ARGS, RenderBrowser, chromium_path
from studio.render.models import (
    CompileError,
    RenderError,
    RenderStatus,
    RenderVerdict,
    StoryVerdict,
    WaitFor,
    overall_status,
)

__all__ = [
    "CHROMIUM_ARGS",
    "CompileError",
    "RenderBrowser",
    "RenderError",
    "RenderStatus",
    "RenderVerdict",
    "StoryVerdict",
    "WaitFor",
    "chromium_path",
    "overall_status",
]
