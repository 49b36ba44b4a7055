"""Child processes: spawn in their own session, stop by escalation, reap orphans; restart policy."""

from studio.process.child import (
    Child,
    OutputRing,
)
from studio.process.manager import (
    ProcessManager,
    ProcessSpec,
)
from studio.process.orphans import (
    reap_orphans,
    write_pid_record,
)
from studio.process.policy import (
    TRANSITIONS,
    ProcessStatus,
    RestartCount,
    RestartDecision,
    RestartPolicy,
    StopResult,
    check_transition,
)

__all__ = [
    "TRANSITIONS",
    "Child",
    "OutputRing",
    "ProcessManager",
    "ProcessSpec",
    "ProcessStatus",
    "RestartCount",
    "RestartDecision",
    "RestartPolicy",
    "StopResult",
    "check_transition",
    "reap_orphans",
    "write_pid_record",
]
