"""The exception tree: shape, codes, and surviving the trip between processes."""

from __future__ import annotations

import copy
import inspect
import pickle
import re
import subprocess
import sys

import pytest

import studio.errors as errors_module
from studio.errors import (
    InvalidRequest,
    NotFound,
    PathNotAllowed,
    SandboxNotFound,
    StudioError,
)

CLASSES = [getattr(errors_module, name) for name in errors_module.__all__]


def docstring_tree() -> dict[str, str | None]:
    """Each class named in the module docstring's drawing, mapped to its drawn parent."""
    doc = errors_module.__doc__
    assert doc is not None
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in doc.splitlines():
        # "    │   ├── Name": each "│   " or "    " before the branch is one level deeper.
        match = re.fullmatch(r" {4}((?:[│ ] {3})*)([├└]── )?([A-Z]\w+)", line)
        if not match or (match.group(2) is None and stack):
            continue
        name = match.group(3)
        depth = len(match.group(1)) // 4 + (1 if match.group(2) else 0)
        del stack[depth:]
        parents[name] = stack[-1] if stack else None
        stack.append(name)
    return parents


def test_all_lists_every_exception_class() -> None:
    defined = {
        name
        for name, value in vars(errors_module).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert defined == set(errors_module.__all__)


def test_tree_in_docstring_matches_the_classes() -> None:
    drawn = docstring_tree()
    assert set(drawn) == set(errors_module.__all__)
    for cls in CLASSES:
        expected_parent = drawn[cls.__name__]
        if expected_parent is None:
            assert cls is StudioError
            assert cls.__bases__ == (Exception,)
        else:
            assert cls.__bases__ == (getattr(errors_module, expected_parent),), cls.__name__


def test_codes_are_unique_snake_case_and_classes_documented() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(set(codes)) == len(codes)
    for cls in CLASSES:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code), cls
        assert "code" in vars(cls), f"{cls.__name__} inherits its parent's code"
        assert cls.__doc__ and cls.__doc__.strip(), f"{cls.__name__} has no docstring"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_pickle_round_trip(cls: type[StudioError]) -> None:
    error = cls(
        f"{cls.__name__} happened: do the other thing",
        sandbox_id="sb_abc123",
        output=["line 1", 'line "2"'],
        state="running",
    )
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(restored) is cls
        assert restored.message == error.message
        assert str(restored) == error.message
        assert restored.args == (error.message,)
        assert restored.details == error.details
        assert restored.code == cls.code
    assert copy.deepcopy(error).details == error.details
    assert copy.copy(error).message == error.message


def test_details_are_optional_and_message_is_str() -> None:
    error = SandboxNotFound("no sandbox 'sb_abc123'; list yours with GET /sandboxes")
    assert error.details == {}
    assert str(error) == "no sandbox 'sb_abc123'; list yours with GET /sandboxes"
    assert pickle.loads(pickle.dumps(error)).details == {}
    assert isinstance(error, NotFound) and isinstance(error, StudioError)
    assert isinstance(PathNotAllowed("x"), InvalidRequest)


def test_traceback_does_not_break_pickling() -> None:
    try:
        raise PathNotAllowed("bad path", path="../x")
    except PathNotAllowed as exc:
        restored = pickle.loads(pickle.dumps(exc))
    assert restored.details == {"path": "../x"}


CHILD = """
import pickle, sys
error = pickle.loads(sys.stdin.buffer.read())
print(type(error).__module__, type(error).__name__, error.code, error.details["port"], error)
"""


def test_round_trip_through_another_process() -> None:
    from studio.errors import PortInUse

    error = PortInUse("port 5173 is taken and no other was free", port=5173)
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=pickle.dumps(error),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.decode().split(" ", 4) == [
        "studio.errors",
        "PortInUse",
        "port_in_use",
        "5173",
        "port 5173 is taken and no other was free\n",
    ]


def test_ray_wraps_and_unwraps_our_errors() -> None:
    # What a caller of an actor method sees: Ray's dual-class wrapper.
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    ray_exceptions = pytest.importorskip("ray.exceptions")
    error = SandboxNotFound("no sandbox 'sb_abc123'", sandbox_id="sb_abc123")
    restored = cloudpickle.loads(cloudpickle.dumps(error))
    assert type(restored) is SandboxNotFound
    assert restored.details == {"sandbox_id": "sb_abc123"}
    wrapped = ray_exceptions.RayTaskError("get", "Traceback ...", restored).as_instanceof_cause()
    assert isinstance(wrapped, SandboxNotFound)
    assert isinstance(wrapped, NotFound)
    assert wrapped.code == "sandbox_not_found"
    assert wrapped.message == "no sandbox 'sb_abc123'"
    assert wrapped.details == {"sandbox_id": "sb_abc123"}
