"""driftline: batch ML-model monitoring, from a Parquet lake to Prometheus (docs/contract.md).

Exit status: 0 done (drift found is still 0); 1 the run failed; 2 bad usage or bad input, with a
one-line message naming the file, column or value and what was expected.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from core.errors import DriftlineError
from core.settings import Settings, load_settings, prefect_environment
from driftline import exits, terminal
from driftline.arguments import build_parser

if TYPE_CHECKING:
    from model_registry.registry import ModelCard


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
        date_column=args.date_column,
    )
    print(_registered(card))
    return 0


def _registered(card: ModelCard) -> str:
    from model_registry.task import ClassifierHoldoutMetrics

    if isinstance(card.metrics, ClassifierHoldoutMetrics):
        return (
            f"registered {card.name} {card.version} (production): a classifier of "
            f"{len(card.classes)} classes ({', '.join(card.classes)}), {len(card.features)} "
            f"features, holdout accuracy {card.metrics.accuracy:.3f}, ROC AUC "
            f"{card.metrics.roc_auc:.3f}"
        )
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
    terminal.flow_environment()
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
    terminal.flow_environment()
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


def _policy(args: argparse.Namespace) -> int:
    import json

    from driftline import api

    registry = _settings(args, push=False).model_registry_uri
    if args.action == "set":
        policy = api.set_policy(args.model, args.file, registry=registry)
    else:
        policy = api.get_policy(args.model, registry=registry)
    print(json.dumps({"model": args.model, "version": policy.version, **policy.to_mapping()},
                     indent=2))  # fmt: skip
    return 0


def _serve(args: argparse.Namespace) -> int:
    terminal.flow_environment()
    from flows.deployments import serve

    serve(slices=args.slices)
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
    terminal.flow_environment()  # after the stack is up: the runs go to its Prefect server
    demo(settings, config, days=args.days, rows_per_day=args.rows_per_day)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "register": _register,
    "simulate": _simulate,
    "monitor": _monitor,
    "backfill": _backfill,
    "policy": _policy,
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


def main(argv: Sequence[str] | None = None) -> int:
    with terminal.noting_interrupts() as interrupted:
        return _main(argv, interrupted)


def _main(argv: Sequence[str] | None, interrupted: threading.Event) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        _export_flags(args)
        prefect_environment()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if interrupted.is_set():  # Ctrl-C, raised as something else by the code it stopped
            return 130
        if isinstance(exc, DriftlineError):
            print(f"driftline: error: {exc}", file=sys.stderr)
            return exc.exit_code
        # the traceback is in Prefect's log; the user gets one line
        unreachable = terminal.prefect_unreachable(exc)
        if unreachable is not None:
            print(f"driftline: error: {unreachable}", file=sys.stderr)
            return 1
        print(f"driftline: error: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run() -> NoReturn:
    """The `driftline` command: in the stack's warm runner when it serves the command (see
    `driftline.runner`), else `main` here; then leave without the interpreter's teardown
    (`driftline.exits`)."""
    leave = exits.leave_last()  # first of all: its handler must run after every other
    code = _in_runner(sys.argv[1:])
    if code is None:
        code = main()
    leave.code = code
    sys.exit(code)


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


if __name__ == "__main__":
    run()
