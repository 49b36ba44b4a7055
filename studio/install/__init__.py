"""Node dependencies: one install per lockfile per node, linked into each sandbox."""

from studio.install.cache import (
    NPM_CI_ARGS,
    cache_key,
    cache_package_json,
    ensure_node_modules,
    link_node_modules,
    node_major_version,
    npm_output_summary,
    parse_node_major,
)

__all__ = [
    "NPM_CI_ARGS",
    "cache_key",
    "cache_package_json",
    "ensure_node_modules",
    "link_node_modules",
    "node_major_version",
    "npm_output_summary",
    "parse_node_major",
]
