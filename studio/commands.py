"""Execute commands: what a client may ask a sandbox to do to its files.

The request is the API's ``{"command": "write_file", "file_path": ...,
"content": ..., "description": ...}``, a union discriminated by ``command``.
Validation of the shape happens here (the API answers 422 naming the field);
whether a path is allowed is decided against the worktree by ``studio.paths``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from studio.render.models import RenderVerdict, WaitFor

__all__ = [
    "DeleteFile",
    "ExecuteCommand",
    "ExecuteResult",
    "FileContent",
    "ListFiles",
    "ReadFile",
    "WriteFile",
    "WriteFiles",
    "changed_paths",
    "command_adapter",
    "is_mutation",
]

FilePath = Annotated[str, Field(min_length=1, max_length=4096, description="Path inside the repo.")]
Description = Annotated[str, Field(max_length=500, description="What the edit does (commit text).")]
Wait = Annotated[
    WaitFor,
    Field(
        description='"commit" answers once committed; "render" once the stories the edit '
        'touched re-rendered, with their verdict in `render`; "screenshot" as "render", '
        "each rendered story with the `screenshot_url` of its picture."
    ),
]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WriteFile(_Command):
    """Create or replace one file (atomically) and commit it."""

    command: Literal["write_file"]
    file_path: FilePath
    content: str
    description: Description = ""
    wait: Wait = "commit"


class FileContent(BaseModel):
    """One file of a batch write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_path: FilePath
    content: str


class WriteFiles(_Command):
    """Write several files and commit them together as one commit."""

    command: Literal["write_files"]
    files: list[FileContent] = Field(min_length=1, max_length=200)
    description: Description = ""
    wait: Wait = "commit"


class DeleteFile(_Command):
    """Delete one file and commit the deletion."""

    command: Literal["delete_file"]
    file_path: FilePath
    description: Description = ""
    wait: Wait = "commit"


class ReadFile(_Command):
    """Return one file's text."""

    command: Literal["read_file"]
    file_path: FilePath


class ListFiles(_Command):
    """List the repository's files under a directory (default: all)."""

    command: Literal["list_files"]
    file_path: str = Field("", max_length=4096, description="Directory to list; '' = the root.")


ExecuteCommand = Annotated[
    WriteFile | WriteFiles | DeleteFile | ReadFile | ListFiles,
    Field(discriminator="command"),
]

command_adapter: TypeAdapter[ExecuteCommand] = TypeAdapter(ExecuteCommand)


def changed_paths(command: ExecuteCommand) -> list[str]:
    """The repo-relative files a mutation writes or deletes (none for a read)."""
    if isinstance(command, WriteFiles):
        return [f.file_path for f in command.files]
    if isinstance(command, WriteFile | DeleteFile):
        return [command.file_path]
    return []


def is_mutation(command: ExecuteCommand) -> bool:
    """Whether the command changes files (and so is serialized and committed)."""
    return isinstance(command, WriteFile | WriteFiles | DeleteFile)


class ExecuteResult(BaseModel):
    """The API's execute response (``output``, ``commit_hash``) plus what reads return."""

    model_config = ConfigDict(frozen=True)

    output: str
    commit_hash: str | None = None
    content: str | None = None
    files: list[str] | None = None
    pushed: bool | None = None
    """With ``durable_commits``: whether the commit is on the origin too (None: not asked)."""
    render: RenderVerdict | None = None
    """With ``"wait": "render"``: what the commit rendered."""
