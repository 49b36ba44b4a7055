"""Ray actors: one per sandbox, and the manager that supervises them."""

__all__: list[str] = []
