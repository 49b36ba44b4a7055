"""Which Ray workers are a sandbox actor's: those whose runtime env sets one variable.

A Ray worker does not know at boot which actor or task it will be given, and
the preload (:mod:`actors._preload`) must decide then whether to import the
sandbox's modules and start a Vite standby. So the warm pool starts its spares
with :func:`sandbox_runtime_env` (:mod:`actors._prestart`), and a sandbox actor
sent to a spare is created with it too. Ray hands an actor only a worker of its
own runtime env: those workers serve sandbox actors and nothing else, and they
are the only ones that carry :data:`SANDBOX_WORKER_VARIABLE` from their start.

Such a worker starts through Ray's ``setup_worker.py`` shim, which costs CPU
(docs/performance.md, "Warm pool"): a spare pays it while it waits, and a
sandbox actor created when no spare waits gets a plain worker instead
(:class:`actors._ray_backend.RayBackend`).

Nothing here imports Ray or the project: every worker of a node imports this
module through the preload, and the others must pay nothing for it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SANDBOX_WORKER_VARIABLE", "is_sandbox_worker", "sandbox_runtime_env"]

# Set in a sandbox actor's worker by its runtime env; set nowhere else.
SANDBOX_WORKER_VARIABLE = "COMPONENT_STUDIO_SANDBOX_WORKER"


def sandbox_runtime_env() -> dict[str, Any]:
    """The runtime env of sandbox actors and of the spare workers started for them."""
    return {"env_vars": {SANDBOX_WORKER_VARIABLE: "1"}}


def is_sandbox_worker() -> bool:
    """Whether this process is a worker started for sandbox actors."""
    return os.environ.get(SANDBOX_WORKER_VARIABLE) == "1"
