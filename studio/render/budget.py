"""What a render verdict and the node's browser may spend (no Playwright here: the actors
import these without loading it)."""

__all__ = ["DEFAULT_TIMEOUT", "IDLE_SECONDS", "MAX_STORIES"]

# Seconds a verdict may take in all before the stories not yet rendered are `timeout`.
DEFAULT_TIMEOUT = 15.0
# Stories rendered per verdict at most; the rest are counted as skipped (an edit
# to a shared module may touch hundreds, and the agent wants an answer now).
MAX_STORIES = 12
# Seconds a sandbox's page stays open without a verdict.
IDLE_SECONDS = 300.0
