"""Component Studio's performance harness: ``python -m benchmarks run [--quick]``.

Each scenario measures the real service (local Ray, Serve, real Vite, Chromium)
or one of the floors it is compared with in the same run; the results go to
``benchmarks/results/<date>.json`` and a markdown table beside it.
"""

__all__: list[str] = []
