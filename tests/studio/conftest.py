"""The sandbox fixtures (origin repository, node settings, sandbox factory) for every module."""

from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures, requested by name)
    install_cache,
    make_sandbox,
    origin,
    settings,
)
