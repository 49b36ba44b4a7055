"""The render verdict of an edit (models.py) and the node's browser that makes it (browser.py).

Only the models are imported here: the API's request and answer types use
them, and importing them must not load Playwright (``studio.render.browser``
does, where a browser runs).
"""

from studio.render.models import (
    CompileError,
    RenderError,
    RenderStatus,
    RenderVerdict,
    StoryVerdict,
    WaitFor,
    overall_status,
    wants_verdict,
)

__all__ = [
    "CompileError",
    "RenderError",
    "RenderStatus",
    "RenderVerdict",
    "StoryVerdict",
    "WaitFor",
    "overall_status",
    "wants_verdict",
]
