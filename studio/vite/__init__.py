"""A sandbox's studio app and the Vite dev server that renders it."""

from studio.vite.deps import (
    SEED_ROOT,
    deps_seed_dir,
    seed_key,
    template_fingerprint,
)
from studio.vite.server import (
    CONFIG_FILE,
    DEFAULT_COMPONENT_GLOB,
    LAUNCHER,
    STUDIO_DIR,
    VITE_ENV,
    ViteServer,
    cleanup_studio_app,
    generate_studio_app,
    is_port_conflict,
    read_studio_config,
    renderer_url,
    studio_config,
    vite_argv,
    write_studio_config,
)
from studio.vite.shell import (
    SHELL_FILE,
    SHELL_MAP,
    SHELL_ROOT,
    ensure_shell,
    install_shell,
    shell_path,
)
from studio.vite.standby import (
    PRELOADED_PACKAGES,
    STANDBY_SCRIPT,
    ViteStandby,
    standby_argv,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_COMPONENT_GLOB",
    "LAUNCHER",
    "PRELOADED_PACKAGES",
    "SEED_ROOT",
    "SHELL_FILE",
    "SHELL_MAP",
    "SHELL_ROOT",
    "STANDBY_SCRIPT",
    "STUDIO_DIR",
    "VITE_ENV",
    "ViteServer",
    "ViteStandby",
    "cleanup_studio_app",
    "deps_seed_dir",
    "ensure_shell",
    "generate_studio_app",
    "install_shell",
    "is_port_conflict",
    "read_studio_config",
    "renderer_url",
    "seed_key",
    "shell_path",
    "standby_argv",
    "studio_config",
    "template_fingerprint",
    "vite_argv",
    "write_studio_config",
]
