"""Component Studio: cluster."""
