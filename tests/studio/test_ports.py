"""Port allocation: the pure choice, the bind check, and the cross-process reservation table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from studio.errors import InvalidConfig, PortInUse
from studio.ports import (
    PortAllocator,
    Reservation,
    live_reservations,
    pick_port,
    port_is_free,
    port_range,
    process_alive,
)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def _free_range(count: int) -> int:
    """A base port such that ``count`` ports from it were all free a moment ago."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            base: int = sock.getsockname()[1]
        if base + count <= 65535 and all(port_is_free(HOST, p) for p in range(base, base + count)):
            return base
    raise AssertionError("no free port range found")


@pytest.fixture
def held_socket() -> Iterator[socket.socket]:
    """A loopback socket bound (not listening) to a port the OS picked."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    yield sock
    sock.close()


def _res(port: int, owner: str = "sb_aaaaaa", pid: int = 1) -> Reservation:
    return Reservation(port=port, owner=owner, pid=pid, create_time=0.0, reserved_at=0.0)


# --- pure decisions ---------------------------------------------------------


def test_port_range_is_inclusive_of_base_and_holds_count_ports():
    assert list(port_range(5173, 3)) == [5173, 5174, 5175]


@pytest.mark.parametrize(("base", "count"), [(5173, 0), (0, 5), (65535, 2)])
def test_port_range_rejects_empty_or_out_of_bounds(base: int, count: int):
    with pytest.raises(InvalidConfig):
        port_range(base, count)


def test_pick_port_takes_the_first_untaken_free_port():
    assert pick_port(range(10, 15), {10, 11}, lambda p: p != 12) == 13


def test_pick_port_tries_preferred_first_and_ignores_it_outside_the_candidates():
    assert pick_port(range(10, 15), set(), lambda p: True, preferred=13) == 13
    assert pick_port(range(10, 15), set(), lambda p: True, preferred=99) == 10
    # A taken preferred port falls back to the normal order.
    assert pick_port(range(10, 15), {13}, lambda p: True, preferred=13) == 10


def test_pick_port_returns_none_when_nothing_fits():
    assert pick_port(range(10, 12), {10}, lambda p: False) is None


def test_pick_port_does_not_probe_taken_ports():
    probed: list[int] = []

    def is_free(port: int) -> bool:
        probed.append(port)
        return True

    assert pick_port(range(10, 13), {10, 11}, is_free) == 12
    assert probed == [12]


def test_live_reservations_keeps_only_alive_owners_by_port():
    records = [_res(10, pid=1), _res(11, pid=2), _res(12, pid=3)]
    live = live_reservations(records, lambda r: r.pid != 2)
    assert sorted(live) == [10, 12]
    assert live[12].pid == 3


# --- bind check and liveness --------------------------------------------------


def test_port_is_free_is_false_for_a_bound_but_not_listening_socket(held_socket):
    port = held_socket.getsockname()[1]
    assert not port_is_free(HOST, port)
    held_socket.close()
    assert port_is_free(HOST, port)


def test_port_is_free_is_false_for_a_listener_on_all_interfaces():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        assert not port_is_free(HOST, sock.getsockname()[1])


def test_port_is_free_handles_ipv6_hosts():
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
        assert not port_is_free("::1", sock.getsockname()[1])


def test_process_alive_checks_pid_and_start_time():
    me = psutil.Process()
    assert process_alive(me.pid, me.create_time())
    assert not process_alive(me.pid, me.create_time() - 1000)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    child.wait()
    assert not process_alive(child.pid, created)


def test_process_alive_is_false_for_a_zombie():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    # Not reaped yet: wait for it to exit without collecting it.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert not process_alive(child.pid, created)
    finally:
        child.wait()


# --- the allocator ------------------------------------------------------------


def _allocator(tmp_path: Path, base: int, count: int) -> PortAllocator:
    return PortAllocator(tmp_path / "locks", host=HOST, base=base, count=count)


def test_allocate_gives_distinct_ports_and_records_the_owner(tmp_path):
    base = _free_range(5)
    ports = _allocator(tmp_path, base, 5)
    first = ports.allocate("sb_aaaaaa")
    second = ports.allocate("sb_bbbbbb")
    assert first != second
    held = ports.reservations()
    assert held[first].owner == "sb_aaaaaa"
    assert held[second].pid == os.getpid()
    # A second allocator on the same directory sees the same table.
    assert set(_allocator(tmp_path, base, 5).reservations()) == {first, second}


def test_allocate_skips_a_port_taken_on_the_host(tmp_path, held_socket):
    taken = held_socket.getsockname()[1]
    ports = _allocator(tmp_path, taken, 1)
    with pytest.raises(PortInUse) as info:
        ports.allocate("sb_aaaaaa")
    assert info.value.details["first"] == taken
    assert ports.reservations() == {}


def test_allocate_raises_port_in_use_when_the_range_is_exhausted(tmp_path):
    base = _free_range(2)
    ports = _allocator(tmp_path, base, 2)
    assert {ports.allocate("sb_aaaaaa"), ports.allocate("sb_bbbbbb")} == {base, base + 1}
    with pytest.raises(PortInUse, match="no free port"):
        ports.allocate("sb_cccccc")


def test_release_frees_the_port_for_the_next_allocation(tmp_path):
    base = _free_range(1)
    ports = _allocator(tmp_path, base, 1)
    port = ports.allocate("sb_aaaaaa")
    assert not ports.release(port, "sb_other")
    assert ports.release(port, "sb_aaaaaa")
    assert not ports.release(port)
    assert ports.allocate("sb_bbbbbb") == port


def test_release_owner_drops_all_of_its_ports(tmp_path):
    base = _free_range(3)
    ports = _allocator(tmp_path, base, 3)
    mine = {ports.allocate("sb_aaaaaa"), ports.allocate("sb_aaaaaa")}
    other = ports.allocate("sb_bbbbbb")
    assert set(ports.release_owner("sb_aaaaaa")) == mine
    assert set(ports.reservations()) == {other}


def test_allocate_honours_a_preferred_port(tmp_path):
    base = _free_range(4)
    ports = _allocator(tmp_path, base, 4)
    assert ports.allocate("sb_aaaaaa", preferred=base + 2) == base + 2
    # Reserved by someone else: not given out again.
    assert ports.allocate("sb_bbbbbb", preferred=base + 2) == base


def test_an_unreadable_reservation_file_is_started_afresh(tmp_path):
    base = _free_range(1)
    ports = _allocator(tmp_path, base, 1)
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "vite-ports.json").write_text("{not json")
    assert ports.allocate("sb_aaaaaa") == base
    data = json.loads((tmp_path / "locks" / "vite-ports.json").read_text())
    assert [r["port"] for r in data["reservations"]] == [base]


def test_threads_never_get_the_same_port(tmp_path):
    base = _free_range(8)
    results: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        # One allocator per thread: each opens its own lock file description.
        port = _allocator(tmp_path, base, 8).allocate("sb_thread")
        with lock:
            results.append(port)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(base, base + 8))


_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from studio.ports import PortAllocator
    ports = PortAllocator(Path(sys.argv[1]), host="127.0.0.1", base=int(sys.argv[2]),
                          count=int(sys.argv[3]))
    print(ports.allocate(sys.argv[4]), flush=True)
    sys.stdin.read()  # hold the reservation until the test closes stdin
    """
)


def _spawn_holder(lock_dir: Path, base: int, count: int, owner: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_dir), str(base), str(count), owner],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_separate_processes_never_get_the_same_port_and_dead_owners_are_reclaimed(tmp_path):
    base = _free_range(4)
    lock_dir = tmp_path / "locks"
    holders = [_spawn_holder(lock_dir, base, 4, f"sb_proc{i}aa") for i in range(4)]
    try:
        ports = [int(h.stdout.readline()) for h in holders]  # type: ignore[union-attr]
        assert sorted(ports) == list(range(base, base + 4))
        allocator = PortAllocator(lock_dir, host=HOST, base=base, count=4)
        assert {r.owner for r in allocator.reservations().values()} == {
            f"sb_proc{i}aa" for i in range(4)
        }
        with pytest.raises(PortInUse):
            allocator.allocate("sb_parent")
    finally:
        for holder in holders:
            holder.communicate(input="", timeout=30)
    # The owners exited without releasing: their reservations are stale now.
    assert allocator.reservations() == {}
    assert allocator.allocate("sb_parent") == base
