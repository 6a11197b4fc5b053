"""Command line: ``smppbridge serve | check-config | hash-password | send | simulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import TaskID

    from smppbridge.tools.send import SendResult

__all__ = ["main"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from smppbridge.config import ConfigError, load_config
    from smppbridge.core.errors import ProviderError
    from smppbridge.node.node import run
    from smppbridge.observability.logging import configure_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        # every problem, each on a line of its own (a journal shows them one by one)
        for problem in exc.problems:
            print(f"smppbridge: invalid configuration: {problem}", file=sys.stderr)
        return 2
    configure_logging(config.log.level, config.log.format)
    _use_uvloop()
    _tune_gc()
    try:
        return asyncio.run(run(config, args.config))
    except OSError as exc:
        print(f"smppbridge: cannot start: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. a store schema newer than this program
        print(f"smppbridge: cannot start: {exc}", file=sys.stderr)
        return 1
    except ProviderError as exc:  # a provider worker that could not start
        print(f"smppbridge: cannot start: {exc}", file=sys.stderr)
        return 1


def _tune_gc() -> None:
    """Garbage collector settings of a serving process.

    What exists now (modules, config) lives as long as the process: frozen out of the
    collector's sight, so that a full collection does not walk it again (~40,000
    objects). Young collections every 10,000 allocations instead of 700, and fewer full
    ones: per-message objects die by reference counting, and full collections paused
    the loop 50-300 ms at a time in a soak (60 s at 1,000 msg/s: ack p99 54-75 ms with
    the defaults, 17 ms like this).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _use_uvloop() -> None:
    """uvloop when installed (`pip install smppbridge[speed]`), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _cmd_check_config(args: argparse.Namespace) -> int:
    from smppbridge.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:  # every problem of the file, one per line
            print(problem, file=sys.stderr)
        return 2
    print(f"{config.source}: OK ({len(config.accounts)} accounts, "
          f"{len(config.providers)} providers)")
    for p in config.providers:
        up = p.upstream
        if up is not None:  # the smpp type: which upstream, how it binds
            print(f"  providers[{p.name}]: smpp upstream {up.host}:{up.port}"
                  f"{' (tls)' if up.tls else ''} as {up.system_id!r}, {up.binds} "
                  f"{up.bind} session(s), window {up.window}, throughput "
                  f"{up.throughput:g}/s" + (" (no limit)" if not up.throughput else "")
                  + f", data_coding {up.data_coding}, long messages {up.long_messages}")
    return 0


def _cmd_hash_password(args: argparse.Namespace) -> int:
    from smppbridge.config import MAX_BIND_PASSWORD
    from smppbridge.core.passwords import hash_password

    password = args.password
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                print("passwords differ", file=sys.stderr)
                return 2
        else:
            password = sys.stdin.readline().rstrip("\n")
    if not password or len(password) > MAX_BIND_PASSWORD:
        print(f"a bind password has 1-{MAX_BIND_PASSWORD} characters (SMPP 3.4 §4.1.1)",
              file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


class _SendProgress:
    """``smppbridge send`` progress on a terminal (rich): a spinner while binding, then
    bars for submitted parts and receipts; ``message_id:``/``receipt:`` lines (and
    notices: submits tried again) are printed above the bars as they arrive, so the
    scrollback matches the plain output."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  transient=True)
        self._binding = self._progress.add_task("binding", total=None)
        self._submitted: TaskID | None = None
        self._receipts: TaskID | None = None

    def __enter__(self) -> _SendProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def submitting(self, parts: int, receipts: bool) -> None:
        self._progress.remove_task(self._binding)
        self._submitted = self._progress.add_task("submitted", total=parts)
        if receipts:
            self._receipts = self._progress.add_task("receipts", total=parts)

    def _line(self, text: str) -> None:
        # Receipt texts come from the network: never read them as rich markup.
        self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def message_id(self, message_id: str) -> None:
        if self._submitted is not None:
            self._progress.advance(self._submitted)
        self._line(f"message_id: {message_id}")

    def receipt(self, text: str) -> None:
        if self._receipts is not None:
            self._progress.advance(self._receipts)
        self._line(f"receipt: {text}")

    def notice(self, text: str) -> None:
        self._line(text)


class _SendNotices:
    """Plain output: notices go to stderr as they happen; ids and receipts are printed
    at the end."""

    def submitting(self, parts: int, receipts: bool) -> None:
        pass

    def message_id(self, message_id: str) -> None:
        pass

    def receipt(self, text: str) -> None:
        pass

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


#: ``smppbridge send`` exit statuses (its --help and docs/operations.md list them).
_SEND_OK, _SEND_FAILED, _SEND_USAGE, _SEND_NO_RECEIPT, _SEND_UNDELIVERED = 0, 1, 2, 3, 4


def _send_report(result: SendResult, exit_status: int, error: str | None) -> dict[str, Any]:
    """The ``send --json`` document: ids, this run's receipts (raw text and parsed
    fields), how many other receipts came, submits tried again."""
    from smppbridge.smpp.receipts import parse_receipt

    report: dict[str, Any] = {
        "message_ids": result.message_ids,
        "receipts": [{"raw": r, "fields": parse_receipt(r)} for r in result.receipts],
        "other_receipts": result.other_receipts,
        "retries": result.retries,
        "exit_status": exit_status,
    }
    if error is not None:
        report["error"] = error
    return report


def _send_outcome(result: SendResult, args: argparse.Namespace) -> tuple[int, str | None]:
    """Exit status and error of a run that got through its submits, by this run's own
    receipts only."""
    from smppbridge.smpp.receipts import parse_receipt

    if args.no_receipt:
        return _SEND_OK, None
    undelivered = result.undelivered()
    if undelivered:
        shown = ", ".join(f"id:{f.get('id', '?')} stat:{f.get('stat', '?')} "
                          f"err:{f.get('err', '?')}" for f in map(parse_receipt, undelivered))
        return _SEND_UNDELIVERED, f"not delivered: {shown}"
    missing = result.missing()
    if missing:
        return _SEND_NO_RECEIPT, (f"no receipt within {args.wait:g}s for {len(missing)} of "
                                  f"{len(result.message_ids)} parts: {', '.join(missing)}")
    return _SEND_OK, None


def _cmd_send(args: argparse.Namespace) -> int:
    from smppbridge.tools.send import SendError, send

    if args.query is not None or args.cancel is not None:
        if args.text is not None:
            print("smppbridge send: --text does not go with --query or --cancel",
                  file=sys.stderr)
            return _SEND_USAGE
        return _cmd_send_query(args) if args.query is not None else _cmd_send_cancel(args)
    if args.to is None or args.text is None:
        print("smppbridge send: --to and --text are required (or --query ID, --cancel ID)",
              file=sys.stderr)
        return _SEND_USAGE
    # Progress only for a person watching: never into a pipe, a file, or JSON output.
    progress = _SendProgress() if not args.json and sys.stdout.isatty() else None
    observer = progress if progress is not None else (None if args.json else _SendNotices())
    error: str | None = None
    try:
        with progress if progress is not None else contextlib.nullcontext():
            result = send(host=args.host, port=args.port, system_id=args.system_id,
                          password=args.password, source=args.source, destination=args.to,
                          text=args.text, wait=args.wait, receipt=not args.no_receipt,
                          observer=observer)
    except SendError as exc:
        result, code, error = exc.result, _SEND_FAILED, f"{exc}"
    else:
        code, error = _send_outcome(result, args)
    if args.json:
        print(json.dumps(_send_report(result, code, error)))
        return code
    if progress is None:  # the progress display printed them as they came
        for message_id in result.message_ids:
            print(f"message_id: {message_id}")
        for receipt in result.receipts:
            print(f"receipt: {receipt}")
    if result.other_receipts:
        print(f"other receipts: {result.other_receipts} (not for this run's messages; "
              "left on the node for the account's receivers)", file=sys.stderr)
    if error is not None:
        print(f"smppbridge send: {error}" if code == _SEND_FAILED else error, file=sys.stderr)
    return code


def _cmd_send_query(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from smppbridge.smpp.times import parse_smpp_time
    from smppbridge.tools.send import SendError, query

    try:
        answer = query(host=args.host, port=args.port, system_id=args.system_id,
                       password=args.password, message_id=args.query, source=args.source)
    except SendError as exc:
        return _send_failed(args, {"message_id": args.query}, f"{exc}")
    if not answer.ok:
        return _send_failed(args, {"message_id": args.query, "command_status": answer.status},
                            f"query_sm refused: {answer.status_text}")
    if args.json:
        print(json.dumps({"message_id": answer.message_id, "command_status": answer.status,
                          "message_state": answer.state_name,
                          "final_date": answer.final_date, "error_code": answer.error_code,
                          "exit_status": _SEND_OK}))
        return _SEND_OK
    final = "none (not final)"
    if answer.final_date:
        final = answer.final_date
        with contextlib.suppress(ValueError):
            when = parse_smpp_time(answer.final_date, 0.0)
            if when is not None:
                final += f" ({datetime.fromtimestamp(when, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    print(f"message_id: {answer.message_id}")
    print(f"message_state: {answer.state_name} ({answer.message_state})")
    print(f"final_date: {final}")
    print(f"error_code: {answer.error_code}")
    return _SEND_OK


def _cmd_send_cancel(args: argparse.Namespace) -> int:
    from smppbridge.tools.send import SendError, cancel

    try:
        answer = cancel(host=args.host, port=args.port, system_id=args.system_id,
                        password=args.password, message_id=args.cancel, source=args.source,
                        destination=args.to or "")
    except SendError as exc:
        return _send_failed(args, {"message_id": args.cancel}, f"{exc}")
    if not answer.ok:
        return _send_failed(args, {"message_id": args.cancel, "command_status": answer.status},
                            f"cancel_sm refused: {answer.status_text}")
    if args.json:
        print(json.dumps({"message_id": answer.message_id, "command_status": answer.status,
                          "status": answer.status_text, "exit_status": _SEND_OK}))
    else:
        print(f"cancel_sm: {answer.status_text}")
    return _SEND_OK


def _send_failed(args: argparse.Namespace, report: dict[str, Any], error: str) -> int:
    """A --query or --cancel that failed: one JSON object, or the error on stderr."""
    if args.json:
        print(json.dumps({**report, "exit_status": _SEND_FAILED, "error": error}))
    else:
        print(f"smppbridge send: {error}", file=sys.stderr)
    return _SEND_FAILED


def _cmd_simulator(args: argparse.Namespace) -> int:
    import contextlib
    import tomllib

    from smppbridge.observability.logging import configure_logging
    from smppbridge.simulator.app import run_simulator

    configure_logging("info", "auto")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"--listen: expected HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    settings: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as f:
                settings = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_simulator(host.strip("[]"), int(port), settings))
    except ValueError as exc:
        print(f"simulator: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from smppbridge.bench.runner import main as bench_main

    return bench_main(list(args.args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smppbridge", description="SMPP 3.4 server bridging ESMEs to HTTP providers")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (no --config: the demo defaults)")
    p.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("hash-password",
                       help="print a salted scrypt hash for an account's password")
    p.add_argument("password", nargs="?", help="(default: prompt, or one line of stdin)")
    p.set_defaults(func=_cmd_hash_password)

    from smppbridge.tools.send import RETRY

    p = sub.add_parser(
        "send", help="bind as an ESME, submit one text, print its receipts "
                     "(or query_sm / cancel_sm one message)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A smoke test: bind, submit one text, wait for the receipts of this "
                    "run's own message ids, unbind.",
        epilog=f"""\
Receipts: only those for this run's message ids are printed and decide the exit
status; any other receipt that comes to the bind is answered ESME_RX_T_APPN (so the
node keeps it for the account's receivers) and counted on stderr as "other receipts".
A submit answered ESME_RTHROTTLED (0x58) or ESME_RMSGQFUL (0x14) is tried again:
{RETRY.describe()}.

Exit status: 0 done (every receipt DELIVRD); 1 connect, bind or request refused;
2 usage; 3 no receipt for some part within --wait; 4 a receipt of this run's is not
DELIVRD.""")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--system-id", default="demo")
    p.add_argument("--password", default="demo")
    p.add_argument("--from", dest="source", default="smppbridge",
                   help="source address (for --query/--cancel: the message's)")
    p.add_argument("--to", help="destination number (optional with --cancel)")
    p.add_argument("--text")
    p.add_argument("--wait", type=float, default=10.0,
                   help="seconds to stay bound for this run's receipts")
    p.add_argument("--no-receipt", action="store_true",
                   help="do not ask for a receipt (binds as a transmitter)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--query", metavar="ID",
                      help="query_sm: print the message's state, final date and error code")
    mode.add_argument("--cancel", metavar="ID", help="cancel_sm: print the answer's status")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: message_ids, receipts (with parsed "
                        "fields), other_receipts, retries, exit_status, error")
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser("bench", help="run the benchmark scenarios (see benchmarks/README.md)",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="scenarios and options of the harness (bench --help)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("simulator", help="run the provider simulator")
    p.add_argument("--listen", default="127.0.0.1:9000", metavar="HOST:PORT")
    p.add_argument("--config", metavar="FILE",
                   help="TOML with simulator settings (outcome rules, latency, faults)")
    p.set_defaults(func=_cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # The harness has its own parser; hand it every argument (--help included).
        from smppbridge.bench.runner import main as bench_main

        return bench_main(argv[1:])
    args: Any = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
