"""The render verdict: what the stories an edit touched showed once Vite served it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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

RenderStatus = Literal["ok", "compile_error", "runtime_error", "timeout"]
WaitFor = Literal["commit", "render", "screenshot"]
"""What an edit's answer waits for: the commit (the default, at once), the render verdict,
or the verdict with a picture of each story it rendered (``screenshot_url``)."""


def wants_verdict(wait: str) -> bool:
    """Whether an answer that waits for ``wait`` carries the render verdict."""
    return wait in ("render", "screenshot")


# The overall status is the worst of the stories' (and of the compile step's).
_SEVERITY: dict[str, int] = {"ok": 0, "timeout": 1, "runtime_error": 2, "compile_error": 3}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class CompileError(_Model):
    """Vite could not transform a module: the payload its error overlay shows."""

    kind: Literal["compile"] = "compile"
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    frame: str | None = None
    plugin: str | None = None


class RenderError(_Model):
    """The story threw while rendering or in an effect (caught by the canvas' error boundary),
    or the page raised an uncaught error."""

    kind: Literal["runtime"] = "runtime"
    message: str
    component_stack: str | None = None


class StoryVerdict(_Model):
    """One affected story (or a component without stories, by its component id)."""

    id: str
    component: str
    status: RenderStatus
    error: Annotated[CompileError | RenderError, Field(discriminator="kind")] | None = None
    console_errors: list[str] = Field(default_factory=list)
    screenshot_url: str | None = None
    """With ``"wait": "screenshot"``: the story's picture as the verdict saw it (the
    screenshot route at this commit and the default viewport; served from the cache)."""


class RenderVerdict(_Model):
    """What the commit rendered: overall status, then per affected story."""

    commit: str
    status: RenderStatus
    stories: list[StoryVerdict] = Field(default_factory=list)
    compile_errors: list[CompileError] = Field(default_factory=list)
    skipped: int = 0
    """Affected stories not rendered (beyond the per-verdict cap)."""
    detail: str | None = None
    """Why there is no full verdict (the renderer or the browser could not be reached)."""
    seconds: float = 0.0


def overall_status(statuses: list[RenderStatus]) -> RenderStatus:
    """The worst status among ``statuses`` (``ok`` for none)."""
    worst: RenderStatus = "ok"
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status
    return worst
