"""The package skeleton: public modules import and declare their surface."""

import importlib

import pytest

MODULES = ["studio", "studio.errors", "studio.config", "studio.naming", "studio.layout"]


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported}"
