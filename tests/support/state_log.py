"""The sandbox states a registry wrote, read back from its log records."""

from __future__ import annotations

import logging

import pytest

__all__ = ["REGISTRY_LOGGER", "record_states", "states_written"]

REGISTRY_LOGGER = "studio.store.registry"


def record_states(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the registry's state changes (logged at INFO)."""
    caplog.set_level(logging.INFO, logger=REGISTRY_LOGGER)


def states_written(caplog: pytest.LogCaptureFixture, sandbox_id: str) -> list[str]:
    """The states written for ``sandbox_id``, as one chain from the first one it left.

    Each logged step must start where the previous one ended, so a jump made
    without a record of it fails here.
    """
    steps = [
        (r.previous_state, r.state)
        for r in caplog.records
        if r.name == REGISTRY_LOGGER and getattr(r, "sandbox_id", None) == sandbox_id
    ]
    chain = [steps[0][0]] if steps else []
    for before, after in steps:
        assert before == chain[-1], steps
        chain.append(after)
    return chain
