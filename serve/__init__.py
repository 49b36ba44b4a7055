"""Component Studio: serve."""
