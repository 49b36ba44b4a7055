"""Imported by every worker of the session's Ray as it starts: saves its coverage.

Named in the session Ray's ``preload_python_modules``
(:mod:`tests.support.ray_fixtures`) instead of a job runtime env with a
worker setup hook: the service's job has no runtime env, and a test Ray whose
job had one would not match the workers the raylet starts on its own (they
have none), so the warm pool and Ray's worker reuse would behave unlike the
service's.
"""

from tests.support.ray_coverage import start_saving

start_saving()
