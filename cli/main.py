"""The ``studio`` command.

::

    studio up [--host H] [--port P] [--address RAY_ADDRESS] [--demo]
    studio create [--repo ID|NAME] [--set KEY=VALUE ...]
    studio ls [--all]
    studio show SANDBOX
    studio exec SANDBOX write PATH (--file F | --content C) [-m MESSAGE]
    studio exec SANDBOX delete PATH [-m MESSAGE]
    studio exec SANDBOX read PATH
    studio exec SANDBOX ls [DIR]
    studio rollback SANDBOX (--to HASH | --steps N | --undo)
    studio finalize SANDBOX --title T [--description D]
    studio rm SANDBOX

``up`` runs the service (local Ray, the manager, the Serve app); every other
command talks to a running API (``--url``/``STUDIO_URL``, ``--token``/
``STUDIO_TOKEN``) and prints for people, or the API's JSON with ``--json``.
Exit codes: 0 ok, 1 the API refused, 2 the API unreachable, 3 bad token.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from cli.client import COMMANDS
from cli.http import DEFAULT_URL, ApiClient, CliError

__all__ = ["build_parser", "main"]


def _client_options(*, nested: bool = False) -> argparse.ArgumentParser:
    """--url, --token and --json; ``nested`` copies leave the values parsed earlier alone."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        # A subparser's defaults overwrite what its parent parsed: nested copies set none.
        return argparse.SUPPRESS if nested else value

    common.add_argument(
        "--url",
        default=default(os.environ.get("STUDIO_URL", DEFAULT_URL)),
        help="API base URL (env STUDIO_URL; default http://127.0.0.1:8000)",
    )
    common.add_argument(
        "--token",
        default=default(os.environ.get("STUDIO_TOKEN")),
        help="bearer token (env STUDIO_TOKEN); `studio up` prints the admin's",
    )
    common.add_argument(
        "--json", action="store_true", default=default(False), help="print the API's JSON answer"
    )
    return common


def _add_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run Component Studio on a local Ray (or join --address)")
    up.add_argument("--host", default=None, help="address the API binds to (default 127.0.0.1)")
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help="API port (default 8000; any free one outside Ray's worker ports 10002-19999)",
    )
    up.add_argument("--address", default=None, help="join this Ray cluster instead of a local one")
    up.add_argument("--demo", action="store_true", help="also create a sandbox and print its URLs")
    up.add_argument(
        "--dashboard-port", type=int, default=8265, help="local Ray's dashboard port (%(default)s)"
    )
    up.add_argument(
        "--no-dashboard", action="store_true", help="start the local Ray without its dashboard"
    )
    up.add_argument(
        "--slots", type=int, default=16, help="sandboxes the local node may hold (%(default)s)"
    )
    up.add_argument(
        "--no-isolation",
        action="store_true",
        help=(
            "run repository code (Vite) without an OS boundary, as this user: only for a "
            "single trusted user (docs/security.md)"
        ),
    )
    up.add_argument(
        "--temp-dir",
        default=None,
        help="local Ray's temp dir (keep it short: Ray's sockets break past ~45 characters)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``studio`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="studio", description="Component Studio: live, isolated workspaces for UI components."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_up(sub)
    common = _client_options()

    create = sub.add_parser("create", parents=[common], help="create a sandbox (waits until ready)")
    create.add_argument(
        "--repo", default=None, help="repository id or name (default: the only one)"
    )
    create.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)"
    )

    ls = sub.add_parser("ls", parents=[common], help="list your sandboxes")
    ls.add_argument("--all", action="store_true", help="include stopped and finalized ones")

    show = sub.add_parser("show", parents=[common], help="a sandbox's status and commits")
    show.add_argument("sandbox")

    exe = sub.add_parser("exec", parents=[common], help="write, delete, read or list files")
    exe.add_argument("sandbox")
    actions = exe.add_subparsers(dest="action", required=True, metavar="ACTION")
    nested = [_client_options(nested=True)]
    write = actions.add_parser("write", parents=nested, help="write a file (one commit)")
    write.add_argument("path")
    write.add_argument("--file", help="local file with the new content ('-' = stdin)")
    write.add_argument("--content", help="the new content")
    write.add_argument("-m", "--message", help="what the edit does (commit description)")
    delete = actions.add_parser("delete", parents=nested, help="delete a file (one commit)")
    delete.add_argument("path")
    delete.add_argument("-m", "--message", help="what the edit does (commit description)")
    read = actions.add_parser("read", parents=nested, help="print a file")
    read.add_argument("path")
    listing = actions.add_parser("ls", parents=nested, help="list files")
    listing.add_argument("path", nargs="?", default="")

    rollback = sub.add_parser("rollback", parents=[common], help="move the branch back")
    rollback.add_argument("sandbox")
    target = rollback.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="HASH", help="commit to go back to")
    target.add_argument("--steps", type=int, help="how many commits to go back")
    target.add_argument("--undo", action="store_true", help="undo the last rollback")

    finalize = sub.add_parser("finalize", parents=[common], help="push, open the PR, tear down")
    finalize.add_argument("sandbox")
    finalize.add_argument("--title", required=True)
    finalize.add_argument("--description", default="")
    finalize.add_argument(
        "--no-images",
        dest="images",
        action="store_false",
        help="leave the touched stories' before/after pictures out of the PR body",
    )

    rm = sub.add_parser("rm", parents=[common], help="tear a sandbox down (its branch is kept)")
    rm.add_argument("sandbox")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run ``studio`` with ``argv``; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        if args.command == "up":
            from cli.up import run_up  # Ray and Serve load only for `up`

            return run_up(args, stream)
        with ApiClient(args.url, args.token) as client:
            return COMMANDS[args.command](client, args, stream)
    except CliError as exc:
        sys.stderr.write(f"studio: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("studio: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
