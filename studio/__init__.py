"""Component Studio core: configuration, git, processes, Vite, sandbox lifecycle.

Nothing in this package imports Ray, FastAPI or the actors; it is plain Python
that a unit test can drive with real git and real child processes.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
