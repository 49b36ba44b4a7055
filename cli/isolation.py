"""Which OS boundary ``studio up`` runs repository code in, or why it refuses to start.

The default is the boundary (``isolation = "bwrap"``, :mod:`studio.process.boundary`).
Without one that works on this machine ``up`` stops with the reason, unless
``--no-isolation`` says that running repository code as this user is meant
(a single trusted user). The choice goes into the environment too: the Ray
workers ``up`` starts read their settings from it (their preload decides
whether to keep a Vite standby).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from cli.http import CliError
from studio.config import StudioSettings
from studio.process.boundary import Isolation, bwrap_problem

__all__ = ["ISOLATION_VARIABLE", "choose_boundary"]

ISOLATION_VARIABLE = "COMPONENT_STUDIO_ISOLATION"
_TRUSTED = "pass --no-isolation to run it as this user anyway (a single trusted user)"


def choose_boundary(
    settings: StudioSettings, *, no_isolation: bool, environ: MutableMapping[str, str]
) -> tuple[StudioSettings, str]:
    """The settings ``up`` runs with and the line it prints about the boundary.

    Raises :class:`CliError` when no boundary can be had and none was waived.
    """
    if no_isolation:
        environ[ISOLATION_VARIABLE] = Isolation.NONE.value
        chosen = settings.model_copy(update={"isolation": Isolation.NONE})
        return chosen, f"{chosen.boundary().describe()} (--no-isolation)"
    if settings.isolation is Isolation.NONE:
        raise CliError(
            f"{ISOLATION_VARIABLE}=none: repository code would run with no OS boundary; " + _TRUSTED
        )
    problem = bwrap_problem()
    if problem is not None:
        raise CliError(
            f"no OS boundary for repository code: {problem}; install bubblewrap "
            f"(scripts/setup.sh), or {_TRUSTED}"
        )
    environ[ISOLATION_VARIABLE] = settings.isolation.value
    return settings, settings.boundary().describe()
