"""The `pgbyte` command line: check, discover, sync, state show|reset, history.

Exit codes: 0 success; 1 a check or sync failed (or the state is held by a running sync);
2 a usage or connection-file error (also one found only once the source's streams are
discovered: an unknown, ambiguous or twice-listed stream, a mode it cannot sync — before any
`read` or `write`, and not written to the history), or a `state reset --stream` naming no (or
several) streams;
130 / 143 a sync cancelled by SIGINT (Ctrl-C) / SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import orjson
from pgbyte_common import interrupts
from pgbyte_common.messages import to_devnull

from pgbyte.clear import clear_streams
from pgbyte.connection import Connection, ConnectionFileError, load_connection
from pgbyte.protocol import ConnectorError
from pgbyte.report import Reporter, format_summary
from pgbyte.runner import RunnerError
from pgbyte.session import Cancelled, Session
from pgbyte.state import StateBusyError, StateFileError, read_history
from pgbyte.state_cli import cmd_state_reset, cmd_state_show
from pgbyte.sync import sync


class UsageError(Exception):
    """Wrong arguments: argparse's message (main prints it, and with --json a JSON object)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so that `--json` still gets its JSON object
    (subcommand parsers are made of the same class)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pgbyte")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


def _not_negative(convert: Callable[[str], Any], wanted: str) -> Callable[[str], Any]:
    """An argparse type: `convert(text)`, 0 or more and finite, else argparse's usage error
    saying `wanted`."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = -1
        if not 0 <= value < float("inf"):  # (NaN is not either)
            raise argparse.ArgumentTypeError(f"{wanted} is needed, not {text!r}")
        return value

    return parse


_count = _not_negative(int, "a whole number of 0 or more")
_seconds = _not_negative(float, "a number of seconds, 0 or more,")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgbyte",
        description="Pipe an Airbyte source into an Airbyte destination, per connection file.",
    )
    parser.add_argument("--version", action="version", version=f"pgbyte {_version()}")
    # Also before the command (`pgbyte -v sync C`), as many CLIs take it; its own dest: a
    # subcommand's default would overwrite it.
    parser.add_argument("-v", "--verbose", dest="verbose_first", action="store_true",
                        help="show DEBUG logs too (any command)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("connection", metavar="CONN", help="connection file (YAML)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("-v", "--verbose", action="store_true", help="show DEBUG logs too")
        return p

    command("check", "check both connectors' configs and connections")
    command("discover", "list the source's streams: sync modes, keys, column counts")
    p = command("sync", "run the connection once (Sync Now)")
    p.add_argument(
        "--progress-every", type=_seconds, default=10.0, metavar="SECONDS",
        help="interval of plain progress lines when stderr is not a terminal (default 10)",
    )  # fmt: skip
    p.add_argument("--plain", action="store_true", help="plain log lines even on a terminal")
    state = sub.add_parser("state", help="show or reset a connection's saved state")
    # `pgbyte state -v show C` too; a dest of its own, as above
    state.add_argument("-v", "--verbose", dest="verbose_state", action="store_true",
                       help="show DEBUG logs too")  # fmt: skip
    state_sub = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = state_sub.add_parser(
        "show", help="print the saved state per stream",
        description="Print the saved state per stream (cursor, ctid or xmin position).",
    )  # fmt: skip
    p.add_argument("connection", metavar="CONN")
    p.add_argument("--json", action="store_true", help="print the raw saved state (JSON)")
    p.add_argument("-v", "--verbose", action="store_true", help="show DEBUG logs too")
    p = state_sub.add_parser(
        "reset", help="forget the saved state (all, or of some streams)",
        description="Forget the saved state: the next sync reads those streams from the start.",
    )  # fmt: skip
    p.add_argument("connection", metavar="CONN")
    p.add_argument(
        "--stream", action="append", metavar="S",
        help="only this stream (name or namespace.name); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--clear", action="store_true",
        help="also empty the streams' destination tables (Airbyte's Clear data); runs both "
        "connectors",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="show DEBUG logs too")
    p = command("history", "list past syncs of a connection")
    p.add_argument("--limit", type=_count, default=20, help="newest N syncs (default 20)")
    return parser


def _install_signals(session: Session) -> None:
    def handler(signum: int, _frame: Any) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            # The terminal is gone: every later write to it would fail (EIO) and cut the
            # clean-up short. What pgbyte still prints to it goes nowhere instead (output
            # redirected to a file or a pipe still gets the summary).
            with contextlib.suppress(OSError):
                # A terminal is a character device (isatty fails once it hung up).
                to_devnull(*(stream.fileno() for stream in (sys.stdout, sys.stderr)
                             if stat.S_ISCHR(os.fstat(stream.fileno()).st_mode)))  # fmt: skip
        if not session.cancel.is_set():  # the first signal says why (SIGTERM, then Ctrl-C: 143)
            session.cancel_signal = signum
        session.cancel.set()

    if threading.current_thread() is threading.main_thread():
        # SIGHUP: the terminal or SSH session closed. Stopped like Ctrl-C, the sync saves
        # the state of what the destination committed and writes its history entry (under
        # `nohup`, ignored as before).
        interrupts.handle(handler)


def _print_json(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_check(conn: Connection, args: argparse.Namespace, reporter: Reporter) -> int:
    with Session(conn, reporter.log) as session:
        _install_signals(session)
        outcomes = session.check()
    if args.json:
        _print_json([{"connector": r, "ok": ok, "message": m} for r, ok, m in outcomes])
    else:
        for role, ok, text in outcomes:
            print(f"{role}: {'succeeded' if ok else 'FAILED'}" + (f" — {text}" if text else ""))
    return 0 if all(ok for _, ok, _ in outcomes) else 1


def cmd_discover(conn: Connection, args: argparse.Namespace, reporter: Reporter) -> int:
    with Session(conn, reporter.log) as session:
        _install_signals(session)
        catalog, _ = session.discover()
    streams = catalog.get("streams") or []
    if args.json:
        _print_json(catalog)
        return 0
    rows = [("stream", "sync modes", "cursor", "primary key", "columns")]
    for s in streams:
        name = f"{s['namespace']}.{s['name']}" if s.get("namespace") else s["name"]
        cursor = "source-defined" if s.get("source_defined_cursor") else ""
        cursor = cursor or ".".join(s.get("default_cursor_field") or []) or "-"
        key = ", ".join(".".join(p) for p in s.get("source_defined_primary_key") or []) or "-"
        columns = len(((s.get("json_schema") or {}).get("properties")) or {})
        modes = ", ".join(s.get("supported_sync_modes") or ["full_refresh"])
        rows.append((name, modes, cursor, key, str(columns)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"({len(streams)} stream{'s' if len(streams) != 1 else ''})")
    return 0


def cmd_sync(conn: Connection, args: argparse.Namespace, reporter: Reporter) -> int:
    with Session(conn, reporter.log) as session:
        _install_signals(session)
        summary = sync(session, reporter)
    try:
        if args.json:
            _print_json(summary)
        else:
            print(format_summary(summary))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of the summary went away (`pgbyte sync c.yaml | head -1`): the sync's
        # outcome stands (its state and history are saved either way); only the summary is lost.
        _output_lost()
    if summary["status"] == "succeeded":
        return 0
    if summary["status"] == "cancelled":
        return 128 + session.cancel_signal
    return 1


def _output_lost() -> None:
    """Standard output's reader is gone: later writes go nowhere, and stderr says so."""
    to_devnull(sys.stdout.fileno())
    with contextlib.suppress(OSError):
        print("pgbyte: standard output was closed by its reader; the rest of the output "
              "was not printed", file=sys.stderr)  # fmt: skip


def cmd_state(conn: Connection, args: argparse.Namespace, reporter: Reporter) -> int:
    if args.action == "show":
        return cmd_state_show(conn, args)
    if not args.clear:
        return cmd_state_reset(conn, args)
    with Session(conn, reporter.log) as session:
        _install_signals(session)
        return cmd_state_reset(conn, args, lambda keys: clear_streams(session, conn, keys))


def cmd_history(conn: Connection, args: argparse.Namespace) -> int:
    # The file is in the order syncs ended (a refused concurrent sync ends before the one it
    # waited on); shown in the order they started, as their first column reads.
    started = sorted(read_history(conn.history_path), key=lambda e: str(e.get("started_at") or ""))
    entries = started[-args.limit :] if args.limit else []
    if args.json:
        _print_json(entries)
        return 0
    if not started:
        print(f"no syncs yet ({conn.history_path})")
    for entry in entries:
        total = entry.get("total") or {}
        line = (
            f"{entry.get('started_at')}  {entry.get('status', '?'):9}  "
            f"{entry.get('duration_seconds', 0):8.1f} s  "
            f"{total.get('records_emitted', 0):>10,} emitted  "
            f"{total.get('records_committed', 0):>10,} committed"
        )
        print(line)
        for stream in entry.get("streams") or []:
            # Source → destination, namespaced, as the sync summary prints them: two streams
            # may share a name.
            src, dst = stream.get("stream"), stream.get("destination_stream")
            if stream.get("namespace"):
                src = f"{stream['namespace']}.{src}"
            if stream.get("destination_namespace"):
                dst = f"{stream['destination_namespace']}.{dst}"
            print(
                f"    {src} → {dst}: {stream.get('records_emitted', 0):,} "
                f"emitted, {stream.get('records_committed', 0):,} committed"
            )
        if entry.get("reason"):
            print(f"    reason: {entry['reason']}")
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(raw)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        text = f"{exc.parser.prog}: error: {exc}"
        print(text, file=sys.stderr)
        if "--json" in raw:
            _print_failure(text, 2)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C just after the imports (entry.py), while parsing
        sys.exit(cancelled_early(raw, signal.SIGINT))
    except Cancelled as exc:  # entry.py's handler, before a command put its own in
        sys.exit(cancelled_early(raw, exc.signum))
    try:
        verbose = (getattr(args, "verbose", False) or args.verbose_first
                   or getattr(args, "verbose_state", False))  # fmt: skip
        tty = False if getattr(args, "plain", False) else None
        reporter = Reporter(
            tty=tty, progress_every=getattr(args, "progress_every", 10.0),
            min_level="DEBUG" if verbose else "INFO",
        )  # fmt: skip
        light = args.command == "history" or (
            args.command == "state" and not getattr(args, "clear", False)
        )
        conn = load_connection(args.connection, strict=not light)
        if args.command == "state":
            code = cmd_state(conn, args, reporter)
        elif args.command == "history":
            code = cmd_history(conn, args)
        else:
            code = {"check": cmd_check, "discover": cmd_discover, "sync": cmd_sync}[args.command](
                conn, args, reporter
            )
        sys.stdout.flush()  # here, so a closed pipe is handled below and not at exit
    except ConnectionFileError as exc:
        code = _failed(args, str(exc), 2)
    except (ConnectorError, RunnerError, StateFileError, StateBusyError) as exc:
        code = _failed(args, str(exc), 1)
    except Cancelled as exc:
        code = _cancelled(getattr(args, "json", False), exc.signum)
    except KeyboardInterrupt:  # Ctrl-C before the command's own handler was installed
        code = _cancelled(getattr(args, "json", False), signal.SIGINT)
    except BrokenPipeError:
        # The reader of our output went away (`pgbyte state show | head`): no traceback; the
        # output the command exists for was cut short, so it failed.
        _output_lost()
        code = 1
    # Not sys.exit: Python's shutdown would put the default signal actions back, and a second
    # signal then (SIGTERM, then Ctrl-C) would turn the exit status into "killed by SIGINT".
    interrupts.exit_now(code)


def _failed(args: argparse.Namespace, text: str, code: int) -> int:
    """Say why on stderr; with --json, stdout still gets one JSON object a script can read."""
    print(f"pgbyte: {text}", file=sys.stderr)
    if getattr(args, "json", False):
        _print_failure(text, code)
    return code


def _cancelled(json_out: bool, signum: int) -> int:
    """A command cancelled before it had a result: said on stderr, and with --json as the one
    JSON object (status "cancelled", as a sync's summary says when cancelled later)."""
    text = f"cancelled by signal {signum}"
    print(f"pgbyte: {text}", file=sys.stderr)
    if json_out:
        _print_json({"status": "cancelled", "error": text, "exit_code": 128 + signum})
    return 128 + signum


def cancelled_early(argv: Sequence[str], signum: int) -> int:
    """Ctrl-C while the program was still importing (entry.py): cancelled before anything ran."""
    return _cancelled("--json" in argv, signum)


def _print_failure(text: str, code: int) -> None:
    """The one JSON object --json prints on stdout for a command that failed before its result."""
    _print_json({"status": "failed", "error": text, "exit_code": code})


if __name__ == "__main__":
    main()
