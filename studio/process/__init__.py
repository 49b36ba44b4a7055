"""Child processes: spawn in their own session, stop by escalation, reap orphans."""

from studio.process.child import (
    Child,
    OutputRing,
)
from studio.process.manager import (
    DEFAULT_POLICY,
    TRANSITIONS,
    OutputLine,
    ProcessManager,
    ProcessSpec,
    ProcessStatus,
    RestartDecision,
    RestartPolicy,
    StopResult,
    check_transition,
    reap_orphans,
)
from studio.process.orphans import (
    write_pid_record,
)

__all__ = [
    "DEFAULT_POLICY",
    "TRANSITIONS",
    "Child",
    "OutputLine",
    "OutputRing",
    "ProcessManager",
    "ProcessSpec",
    "ProcessStatus",
    "RestartDecision",
    "RestartPolicy",
    "StopResult",
    "check_transition",
    "reap_orphans",
    "write_pid_record",
]
