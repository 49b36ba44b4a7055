"""Misbehaving child processes for tests, run as real processes.

Run it as ``python fakeproc.py MODE [ARGS]`` (or use :func:`fake_argv`). It
imports only the standard library, so it runs from any working directory.

Modes:

``ok PORT``
    prints ``ready``, then answers 200 to every GET on 127.0.0.1:PORT until
    killed (SIGTERM ends it the default way).
``crash-on-start [MESSAGE]``
    prints MESSAGE (default ``error: simulated crash on start``) to stderr and
    exits with code 1.
``ignore-sigterm``
    traps SIGTERM (prints ``ignoring SIGTERM`` to stderr), prints ``ready`` and
    keeps running; only SIGKILL ends it.
``slow-ready SECONDS PORT``
    prints ``starting``, waits SECONDS, then behaves like ``ok PORT``.
``die-after SECONDS``
    prints ``ready``, waits SECONDS, prints ``dying`` to stderr, exits with 3.
``spawn-child [--stubborn]``
    forks a grandchild in the same process group, prints ``child PID`` and
    ``ready``, and both sleep. With ``--stubborn`` the grandchild ignores
    SIGTERM, so only a SIGKILL to the group ends it.
``sleep``
    prints ``ready`` and sleeps until signalled.
``flood N``
    prints ``out I`` to stdout and ``err I`` to stderr for I in 0..N-1, exits 0.
"""

from __future__ import annotations

import http.server
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["FAKEPROC", "fake_argv"]

FAKEPROC = Path(__file__).resolve()


def fake_argv(mode: str, *args: object) -> list[str]:
    """The argv that runs this script in ``mode`` with the current interpreter."""
    return [sys.executable, "-u", str(FAKEPROC), mode, *(str(a) for a in args)]


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Request logs would flood the output ring the tests inspect.
        return


def _serve(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ok)
    print("ready", flush=True)
    server.serve_forever()


def _sleep_forever() -> None:
    while True:
        time.sleep(60)


def _ignore_sigterm(signum: int, frame: object) -> None:
    print("ignoring SIGTERM", file=sys.stderr, flush=True)


def _spawn_child(stubborn: bool) -> None:
    # The grandchild says when its signal setup is done, so a test that sends
    # SIGTERM after "ready" knows a stubborn grandchild really ignores it.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(write_end, b"x")
        os.close(write_end)
        _sleep_forever()
    os.close(write_end)
    os.read(read_end, 1)
    os.close(read_end)
    print(f"child {pid}", flush=True)
    print("ready", flush=True)
    _sleep_forever()


def main(argv: list[str]) -> int:
    """Run the mode named by ``argv[0]``; returns the exit code."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = argv[0], argv[1:]
    if mode == "ok":
        _serve(int(args[0]))
    elif mode == "crash-on-start":
        message = args[0] if args else "error: simulated crash on start"
        print(message, file=sys.stderr, flush=True)
        return 1
    elif mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, _ignore_sigterm)
        print("ready", flush=True)
        _sleep_forever()
    elif mode == "slow-ready":
        print("starting", flush=True)
        time.sleep(float(args[0]))
        _serve(int(args[1]))
    elif mode == "die-after":
        print("ready", flush=True)
        time.sleep(float(args[0]))
        print("dying", file=sys.stderr, flush=True)
        return 3
    elif mode == "spawn-child":
        _spawn_child(stubborn="--stubborn" in args)
    elif mode == "sleep":
        print("ready", flush=True)
        _sleep_forever()
    elif mode == "flood":
        for i in range(int(args[0])):
            print(f"out {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
        return 0
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
