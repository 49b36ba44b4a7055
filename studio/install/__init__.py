"""Node dependencies: one install per lockfile per node, linked into each sandbox."""

from studio.install.cache import (
    ENTRY_RECORD,
    InstalledTree,
    InstallOptions,
    cache_key,
    cache_package_json,
    ensure_install,
    ensure_node_modules,
    entry_name,
    install_inputs,
    install_key,
    link_node_modules,
    node_major_version,
    npm_output_summary,
    parse_node_major,
)
from studio.install.managers import (
    DEFAULT_VERSIONS,
    InstallCommand,
    Manager,
    detect_manager,
    find_install_root,
    install_command,
)

__all__ = [
    "DEFAULT_VERSIONS",
    "ENTRY_RECORD",
    "InstallCommand",
    "InstallOptions",
    "InstalledTree",
    "Manager",
    "cache_key",
    "cache_package_json",
    "detect_manager",
    "ensure_install",
    "ensure_node_modules",
    "entry_name",
    "find_install_root",
    "install_command",
    "install_inputs",
    "install_key",
    "link_node_modules",
    "node_major_version",
    "npm_output_summary",
    "parse_node_major",
]
