"""The package skeleton: every public module imports and declares its surface."""

import importlib
import pkgutil

import pytest

PACKAGES = ["cli", "cluster", "serve", "actors", "studio"]


def _public_modules() -> list[str]:
    names = list(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names += [
            info.name
            for info in pkgutil.walk_packages(path, prefix=f"{package}.")
            if not info.name.rsplit(".", 1)[-1].startswith("_")
        ]
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported}"
