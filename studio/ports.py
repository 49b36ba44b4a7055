"""Vite port allocation on one node.

Each node hands out Vite ports from one configured range
(``StudioSettings.vite_port`` .. ``+ vite_port_count - 1``, below Ray's worker
ports). A port is given out when it is neither reserved by a live owner nor
taken on the host (checked by binding it). Binding alone is not enough: two
sandbox actors (separate processes) could both find a port free and both start
Vite on it before either binds. So allocation runs under a cross-process file
lock and records a reservation in a small JSON file under the node's
``locks/`` directory; the reservation lives until the owner releases it or its
process dies (a dead owner's reservations are reclaimed on the next
allocation, which is what happens after an actor crash).

The decisions (which port, which reservations are still live) are pure
functions; :class:`PortAllocator` adds the lock, the file and the bind check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from studio.config import RAY_WORKER_PORT_MIN
from studio.errors import InvalidConfig, PortInUse

__all__ = [
    "PortAllocator",
    "Reservation",
    "live_reservations",
    "pick_port",
    "port_is_free",
    "port_range",
    "ports_below_ray",
    "process_alive",
]

logger = logging.getLogger(__name__)

RESERVATIONS_FILE = "vite-ports.json"
LOCK_FILE = "vite-ports.lock"


@dataclass(frozen=True)
class Reservation:
    """A port held for ``owner`` (a sandbox id) by the process ``pid``.

    ``create_time`` is the process's start time, so a recycled pid is not
    mistaken for the owner.
    """

    port: int
    owner: str
    pid: int
    create_time: float
    reserved_at: float


def port_range(base: int, count: int) -> range:
    """The ports ``base`` .. ``base + count - 1``; InvalidConfig when empty or out of bounds."""
    if count < 1 or base < 1 or base + count - 1 > 65535:
        raise InvalidConfig(
            f"port range starting at {base} with {count} ports is invalid: "
            "it must hold at least one port and end at or below 65535",
            base=base,
            count=count,
        )
    return range(base, base + count)


def ports_below_ray(base: int, count: int) -> int:
    """How many of ``count`` ports from ``base`` stay below Ray's worker ports (maybe < 1)."""
    return min(count, RAY_WORKER_PORT_MIN - base)


def pick_port(
    candidates: Iterable[int],
    taken: Collection[int],
    is_free: Callable[[int], bool],
    *,
    preferred: int | None = None,
) -> int | None:
    """The first candidate not in ``taken`` that ``is_free`` accepts, or None.

    ``preferred`` is tried first when it is one of the candidates, so a
    restarted sandbox can keep its URL.
    """
    ordered = list(candidates)
    if preferred is not None and preferred in ordered:
        ordered.remove(preferred)
        ordered.insert(0, preferred)
    for port in ordered:
        if port not in taken and is_free(port):
            return port
    return None


def live_reservations(
    reservations: Iterable[Reservation], alive: Callable[[Reservation], bool]
) -> dict[int, Reservation]:
    """The reservations whose owner process is still ``alive``, by port."""
    return {r.port: r for r in reservations if alive(r)}


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` right now.

    SO_REUSEADDR stays off: with it, Linux lets a bind succeed next to a
    socket that is bound but not yet listening, and that is a port Vite would
    then fail to take.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def process_alive(pid: int, create_time: float) -> bool:
    """Whether the process ``pid`` that started at ``create_time`` still runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # create_time is rounded differently across reads; a recycled pid
        # differs by far more than this.
        return abs(proc.create_time() - create_time) < 1.0
    except psutil.NoSuchProcess:
        return False


def _reservation_alive(reservation: Reservation) -> bool:
    return process_alive(reservation.pid, reservation.create_time)


class PortAllocator:
    """Hands out Vite ports of one node's range to sandboxes, across processes.

    Every instance pointing at the same ``lock_dir`` shares one reservation
    table; instances in different processes are as safe as threads in one.
    """

    def __init__(self, lock_dir: Path, *, host: str, base: int, count: int) -> None:
        self.lock_dir = lock_dir
        self.host = host
        self.ports = port_range(base, count)
        self._state = lock_dir / RESERVATIONS_FILE
        self._lock = lock_dir / LOCK_FILE

    def allocate(self, owner: str, *, preferred: int | None = None) -> int:
        """Reserve a free port of the range for ``owner`` and return it.

        Raises :class:`PortInUse` when every port is reserved or taken.
        """
        me = psutil.Process()
        with self._locked():
            held = self._load_live()
            port = pick_port(
                self.ports, held, lambda p: port_is_free(self.host, p), preferred=preferred
            )
            if port is None:
                raise PortInUse(
                    f"no free port in {self.ports.start}-{self.ports.stop - 1} on {self.host}: "
                    f"{len(held)} are reserved by sandboxes and the rest are taken; stop "
                    "sandboxes or widen COMPONENT_STUDIO_VITE_PORT_COUNT",
                    host=self.host,
                    first=self.ports.start,
                    last=self.ports.stop - 1,
                    reserved=len(held),
                )
            held[port] = Reservation(
                port=port,
                owner=owner,
                pid=me.pid,
                create_time=me.create_time(),
                reserved_at=time.time(),
            )
            self._save(held)
        logger.info("port reserved", extra={"port": port, "owner": owner})
        return port

    def release(self, port: int, owner: str | None = None) -> bool:
        """Drop the reservation of ``port`` (only if ``owner`` holds it, when given).

        Returns False when there was no such reservation.
        """
        with self._locked():
            held = self._load_live()
            reservation = held.get(port)
            found = reservation is not None and owner in (None, reservation.owner)
            if found:
                del held[port]
            self._save(held)
        if found:
            logger.info("port released", extra={"port": port})
        return found

    def release_owner(self, owner: str) -> list[int]:
        """Drop every reservation of ``owner``; returns the ports released."""
        with self._locked():
            held = self._load_live()
            ports = sorted(p for p, r in held.items() if r.owner == owner)
            for port in ports:
                del held[port]
            self._save(held)
        return ports

    def reservations(self) -> dict[int, Reservation]:
        """The live reservations, by port (stale ones are left out, not removed)."""
        with self._locked():
            return self._load_live()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with self._lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load_live(self) -> dict[int, Reservation]:
        try:
            raw = json.loads(self._state.read_text())
            records = [Reservation(**item) for item in raw.get("reservations", [])]
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, AttributeError) as exc:
            # The file is only ever replaced whole, so this means someone
            # edited it; starting over only forgets reservations whose Vite
            # still holds its port, and the bind check skips those.
            logger.warning("unreadable port reservations, starting afresh: %s", exc)
            return {}
        return live_reservations(records, _reservation_alive)

    def _save(self, held: Mapping[int, Reservation]) -> None:
        data = {"reservations": [asdict(held[p]) for p in sorted(held)]}
        fd, tmp = tempfile.mkstemp(dir=self.lock_dir, prefix=".vite-ports-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            Path(tmp).replace(self._state)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
