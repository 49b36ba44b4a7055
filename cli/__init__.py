"""The ``studio`` command: ``studio up`` (the composition root) and the client commands."""

__all__: list[str] = []
