"""driftline: batch ML-model monitoring, from a Parquet lake to Prometheus (docs/contract.md).

Exit status: 0 done (drift found is still 0); 1 the run failed; 2 bad usage or bad input, with a
one-line message naming the file, column or value and what was expected.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from core.errors import DriftlineError, InputError
from core.settings import DEFAULT_MODEL, Settings, load_settings, prefect_environment

if TYPE_CHECKING:
    from model_registry.registry import ModelCard

EPILOG = """\
settings: flags, then the environment (DATA_LAKE_URI, MODEL_REGISTRY_URI, PUSHGATEWAY_URL,
PROMETHEUS_URL, ...; see docs/contract.md, "Settings"), then the defaults shown.
exit status: 0 done (drift found is still 0), 1 the run failed, 2 bad usage or bad input.
"""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="driftline",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lake", metavar="URI", help="data lake root (env DATA_LAKE_URI)")
    parser.add_argument(
        "--registry", metavar="URI", help="model registry root (env MODEL_REGISTRY_URI)"
    )
    parser.add_argument(
        "--pushgateway", metavar="URL", help="Pushgateway base URL (env PUSHGATEWAY_URL)"
    )
    parser.add_argument(
        "--prometheus", metavar="URL", help="Prometheus base URL (env PROMETHEUS_URL)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    model_help = "registered model name (default: %(default)s)"

    p = sub.add_parser("train", help="fit the diamonds model, register it, set production")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    p.add_argument("--seed", type=int, default=42, metavar="N", help="default: %(default)s")

    p = sub.add_parser("register", help="register an externally trained model as production")
    p.add_argument("--model", required=True, metavar="NAME", help="name to register under")
    p.add_argument(
        "--artifact",
        type=Path,
        metavar="FILE",
        help="joblib file of the model (not needed when the reference has a prediction column)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        required=True,
        metavar="FILE",
        help="Parquet of out-of-sample rows: features, target, prediction",
    )
    p.add_argument("--target", required=True, metavar="COLUMN", help="the target column")
    p.add_argument(
        "--categorical",
        default="",
        metavar="A,B",
        help="comma-separated categorical features (default: none)",
    )
    p.add_argument(
        "--task",
        choices=["regression", "classification"],
        default="regression",
        help="default: %(default)s (classifiers are not supported yet)",
    )

    p = sub.add_parser("simulate", help="write scored batches and delayed labels")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    p.add_argument("--start", type=_date, required=True, metavar="YYYY-MM-DD", help="first day")
    p.add_argument("--days", type=int, required=True, metavar="N", help="how many days")
    p.add_argument(
        "--rows-per-day", type=int, default=1000, metavar="N", help="default: %(default)s"
    )
    p.add_argument(
        "--scenario",
        choices=["none", "data-drift", "concept-drift", "both"],
        default="none",
        help="default: %(default)s",
    )
    p.add_argument(
        "--drift-start",
        type=_date,
        metavar="YYYY-MM-DD",
        help="first drifted day (default: mid-range)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="default: %(default)s")
    p.add_argument(
        "--pool", type=Path, metavar="FILE", help="Parquet rows to draw from (default: reference)"
    )

    p = sub.add_parser("monitor", help="the nightly flow for one batch day")
    p.add_argument(
        "--date", type=_date, metavar="YYYY-MM-DD", help="batch day (default: yesterday, UTC)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    p.add_argument(
        "--no-push", action="store_true", help="write the result to the lake only, do not push"
    )

    p = sub.add_parser("backfill", help="replay the nightly run for a range of days")
    p.add_argument("--start", type=_date, required=True, metavar="YYYY-MM-DD", help="first day")
    p.add_argument(
        "--end", type=_date, required=True, metavar="YYYY-MM-DD", help="last day (included)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--prometheus-data",
        type=Path,
        metavar="DIR",
        help="write the history as TSDB blocks into this Prometheus data dir",
    )
    out.add_argument(
        "--openmetrics", type=Path, metavar="FILE", help="write the history as OpenMetrics text"
    )

    sub.add_parser("serve", help="run the Prefect deployments on their schedules (02:00 UTC)")

    p = sub.add_parser(
        "stack",
        help="local Prometheus, Pushgateway, Alertmanager, Prefect server and warm runner",
    )
    p.add_argument("action", choices=["up", "down", "status"])

    sub.add_parser("alerts", help="firing alerts and the notifications the local stack received")

    p = sub.add_parser(
        "demo", help="train, simulate with drift, backfill, monitor: the whole story"
    )
    p.add_argument("--days", type=int, default=21, metavar="N", help="default: %(default)s")
    p.add_argument(
        "--rows-per-day", type=int, default=2000, metavar="N", help="default: %(default)s"
    )
    return parser


def _settings(args: argparse.Namespace, *, push: bool = True) -> Settings:
    return load_settings(
        push=push,
        data_lake_uri=args.lake,
        model_registry_uri=args.registry,
        pushgateway_url=args.pushgateway,
        prometheus_url=args.prometheus,
    )


def _train(args: argparse.Namespace) -> int:
    from driftline import commands

    card = commands.train(_settings(args, push=False), model=args.model, seed=args.seed)
    print(_registered(card))
    return 0


def _register(args: argparse.Namespace) -> int:
    from driftline import commands

    card = commands.register(
        _settings(args, push=False),
        model=args.model,
        artifact=args.artifact,
        reference=args.reference,
        target=args.target,
        categorical=[c for c in args.categorical.split(",") if c],
        task=args.task,
    )
    print(_registered(card))
    return 0


def _registered(card: ModelCard) -> str:
    return (
        f"registered {card.name} {card.version} (production): {len(card.features)} features, "
        f"holdout MAE {card.metrics.mae:.4g}, R² {card.metrics.r2:.3f}"
    )


def _simulate(args: argparse.Namespace) -> int:
    from driftline import commands

    summary = commands.simulate(
        _settings(args, push=False),
        model=args.model,
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        scenario=args.scenario,
        seed=args.seed,
        drift_start=args.drift_start,
        pool=args.pool,
    )
    print(
        f"simulated {summary.days} day(s), {summary.rows} rows of {summary.model} "
        f"{summary.model_version}, {summary.label_files} label files; scenario "
        f"{args.scenario} from {summary.drift_start}"
    )
    return 0


def _monitor(args: argparse.Namespace) -> int:
    _settings(args, push=not args.no_push)  # bad settings fail here, before Prefect starts
    _flow_environment()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.monitor import monitor

    # A run from the terminal lasts seconds and sends no heartbeat: Prefect's first one is due
    # after 180 s, and stopping its thread costs up to 1 s. Deployments keep theirs.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        result = monitor(model=args.model, batch_date=args.date, push=not args.no_push)
    print(
        f"{result.model} {result.batch_date}: {result.n_rows} rows, drifted: "
        f"{', '.join(result.drifted_features) or 'none'}"
    )
    return 0


def _backfill(args: argparse.Namespace) -> int:
    _settings(args, push=False)
    _flow_environment()
    from flows.backfill import backfill
    from tasks.reports.backfill import backfill_lines

    report = backfill(
        model=args.model,
        start=args.start,
        end=args.end,
        prometheus_data=str(args.prometheus_data or "") or None,
        openmetrics=str(args.openmetrics or "") or None,
    )
    print("\n".join(backfill_lines(report)))
    return 1 if report.failed else 0


def _serve(args: argparse.Namespace) -> int:
    _flow_environment()
    from flows.deployments import serve

    serve()
    return 0


def _stack(args: argparse.Namespace) -> int:
    from driftline import stack

    return stack.main(args.action)


def _alerts(args: argparse.Namespace) -> int:
    from driftline import stack

    return stack.alerts_main()


def _demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from driftline import stack
    from driftline.demo import demo

    config = stack.StackConfig.local()
    print(stack.format_status(stack.up(config)))
    _flow_environment()  # after the stack is up: the runs go to its Prefect server
    demo(settings, config, days=args.days, rows_per_day=args.rows_per_day)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "register": _register,
    "simulate": _simulate,
    "monitor": _monitor,
    "backfill": _backfill,
    "serve": _serve,
    "stack": _stack,
    "alerts": _alerts,
    "demo": _demo,
}


def _export_flags(args: argparse.Namespace) -> None:
    """Flags win over the environment: flows read their settings from it when they start."""
    for flag, variable in (
        ("lake", "DATA_LAKE_URI"),
        ("registry", "MODEL_REGISTRY_URI"),
        ("pushgateway", "PUSHGATEWAY_URL"),
        ("prometheus", "PROMETHEUS_URL"),
    ):
        if getattr(args, flag):
            os.environ[variable] = getattr(args, flag)


def _flow_environment() -> None:
    """Before a flow runs: the local stack's Prefect server when it is up (unless
    PREFECT_API_URL says otherwise), and a terminal that shows a failed run as one line."""
    from driftline import stack

    api_url = stack.prefect_api_url()
    if api_url and not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = api_url
    imported = "prefect.context" in sys.modules  # in the stack's runner, before this command
    from prefect import flow  # noqa: F401  (sets up Prefect's logging: its console handler)

    if imported:  # Prefect read its settings from the runner's environment: this one's instead
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()

    # Prefect's account of a failure (traceback, Failed states) stays in its API log, where
    # the UI shows it; the terminal gets the one line `main` prints instead
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_a_failure)


def _not_a_failure(record: logging.LogRecord) -> bool:
    """Not Prefect's account of a failure, nor its workers' note at exit that they are still
    sending the run's last events (they finish before the process ends)."""
    return record.levelno < logging.ERROR and not str(record.msg).startswith(
        ("Finished in state Failed", "Finished in state Crashed", "Still processing items")
    )


def _prefect_unreachable(exc: BaseException) -> str | None:
    """The one line for a run whose Prefect API does not answer, else None.

    A server down at the start surfaces as Prefect's RuntimeError "Failed to reach API" raised
    from httpx's connection error; a server gone mid-run as that error itself, once Prefect's
    client has retried (PREFECT_CLIENT_MAX_RETRIES). Only Prefect talks httpx here.
    """
    try:
        import httpx
    except ImportError:
        return None
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, httpx.TransportError):
            break
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    else:
        return None
    assert cause is not None
    detail = (str(cause).strip().splitlines() or [""])[0]
    reason = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        return f"Prefect's temporary local server stopped answering ({reason}); run it again"
    from driftline import hints

    return (
        f"the Prefect server at {api_url} does not answer ({reason}); start it with "
        f"`{hints.command('stack up')}` or unset PREFECT_API_URL, then run the command again"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        _export_flags(args)
        prefect_environment()
        return COMMANDS[args.command](args)
    except DriftlineError as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the traceback is in Prefect's log; the user gets one line
        unreachable = _prefect_unreachable(exc)
        if unreachable is not None:
            print(f"driftline: error: {unreachable}", file=sys.stderr)
            return 1
        print(f"driftline: error: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run() -> NoReturn:
    """The `driftline` command: in the stack's warm runner when it serves the command (see
    `driftline.runner`), else `main` here; then leave without the interpreter's teardown."""
    code = _in_runner(sys.argv[1:])
    if code is None:
        code = main()
    finish()
    os._exit(code)


def _in_runner(argv: list[str]) -> int | None:
    """The exit status of the command as the local stack's runner ran it, or None when it is
    not one the runner serves, or no runner is up, or it declined."""
    if "-h" in argv or "--help" in argv:
        return None
    try:
        args = build_parser().parse_args(argv)
    except DriftlineError:
        return None  # usage errors are told by `main`
    from driftline import runner

    if args.command not in runner.COMMANDS:
        return None
    from core.settings import stack_dir

    return runner.call(argv, runner.socket_path(stack_dir()))


def finish() -> None:
    """What Python's exit does before it frees every module and object one by one: join the
    threads (Prefect's log and event workers drain), run the atexit handlers, flush. Freeing
    takes about 0.9 s after a flow run (Prefect, pandas, scipy, matplotlib) for memory the OS
    takes back at once, so the callers leave with os._exit after this."""
    shutdown = getattr(threading, "_shutdown", None)  # what Python's own exit runs first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to tell it
            stream.flush()


if __name__ == "__main__":
    run()
