"""The environment of processes that run repository code: an allow-list, not a copy.

Vite, its standby and the package manager load code nobody reviewed (the
repository's configuration, its dependencies and their install scripts). The
service's own environment holds its secrets (``COMPONENT_STUDIO_ADMIN_TOKEN``,
``COMPONENT_STUDIO_GITHUB_TOKEN``) and Ray's (``RAY_*``, its session and
authentication token), so these children get only the variables named here,
plus what their caller adds on top. Whatever is added, a ``COMPONENT_STUDIO_*``
or ``RAY_*`` variable never passes.

- :func:`tool_environment`: Node programs that serve (Vite, its standby).
- :func:`installer_environment`: the package manager, which also needs the
  network settings (proxies, certificates) and its own ``npm_config_*``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "FORBIDDEN_PREFIXES",
    "INSTALLER_NAMES",
    "TOOL_NAMES",
    "installer_environment",
    "tool_environment",
]

# Where programs are found, whose files they are, how text is encoded, where temp files go.
_BASE_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}
)
_BASE_PREFIXES = ("LC_",)
# Node's own knobs an operator may set for the service (heap size, a corporate CA).
_NODE_NAMES = frozenset({"NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "NODE_ENV"})
_NETWORK_NAMES = frozenset(
    {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)

TOOL_NAMES = _BASE_NAMES | _NODE_NAMES
INSTALLER_NAMES = TOOL_NAMES | _NETWORK_NAMES
# corepack picks and fetches pnpm/yarn (COREPACK_HOME, its registry, integrity keys).
_INSTALLER_PREFIXES = (*_BASE_PREFIXES, "npm_config_", "NPM_CONFIG_", "COREPACK_")
# The service's settings (its tokens among them) and Ray's; case-insensitive, as
# pydantic-settings reads them.
FORBIDDEN_PREFIXES = ("COMPONENT_STUDIO_", "RAY_")


def _forbidden(name: str) -> bool:
    return name.upper().startswith(FORBIDDEN_PREFIXES)


def _allowed(
    names: frozenset[str],
    prefixes: tuple[str, ...],
    extra: Mapping[str, str] | None,
    source: Mapping[str, str] | None,
) -> dict[str, str]:
    environ = os.environ if source is None else source
    kept = {
        name: value
        for name, value in environ.items()
        if (name in names or name.startswith(prefixes)) and not _forbidden(name)
    }
    kept.update({k: v for k, v in (extra or {}).items() if not _forbidden(k)})
    return kept


def tool_environment(
    extra: Mapping[str, str] | None = None, *, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of Vite and its standby: :data:`TOOL_NAMES` of ``source``, then ``extra``.

    ``source`` defaults to this process's environment.
    """
    return _allowed(TOOL_NAMES, _BASE_PREFIXES, extra, source)


def installer_environment(
    extra: Mapping[str, str] | None = None, *, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The package manager's environment: :data:`INSTALLER_NAMES` and ``npm_config_*``, then
    ``extra``."""
    return _allowed(INSTALLER_NAMES, _INSTALLER_PREFIXES, extra, source)
