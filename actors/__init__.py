"""Component Studio: actors."""
