"""The `driftline` command line (docs/contract.md, "Command line").

Exit status: 0 done (drift found is still 0); 1 the run failed; 2 bad usage or bad input, with a
one-line message naming the file, column or value and what was expected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from core.errors import DriftlineError, InputError
from core.settings import DEFAULT_MODEL, load_settings, prefect_environment


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="driftline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="fit the diamonds model, register it, set production")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--seed", type=int, default=42)

    p = sub.add_parser("register", help="register an externally trained model")
    p.add_argument("--model", required=True)
    p.add_argument("--artifact", type=Path, required=True, help="joblib file of the fitted model")
    p.add_argument("--reference", type=Path, required=True, help="out-of-sample reference rows")
    p.add_argument("--target", required=True)
    p.add_argument("--categorical", default="", help="comma-separated categorical features")

    p = sub.add_parser("simulate", help="write scored batches and delayed labels")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--rows-per-day", type=int, default=1000)
    p.add_argument(
        "--scenario", choices=["none", "data-drift", "concept-drift", "both"], default="none"
    )
    p.add_argument("--drift-start", type=_date, help="first drifted day (default: mid-range)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=Path, help="Parquet rows to draw from (default: the reference)")

    p = sub.add_parser("monitor", help="the nightly flow for one batch day")
    p.add_argument("--date", type=_date, help="batch day (default: yesterday, UTC)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--no-push", action="store_true")

    p = sub.add_parser("backfill", help="replay the nightly run for a range of days")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--model", default=DEFAULT_MODEL)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--prometheus-data", type=Path, help="Prometheus data dir for TSDB blocks")
    out.add_argument("--openmetrics", type=Path, help="write the history as OpenMetrics text")

    sub.add_parser("serve", help="run the Prefect deployments on their schedules")

    p = sub.add_parser("stack", help="local Prometheus, Pushgateway and Alertmanager")
    p.add_argument("action", choices=["up", "down", "status"])

    p = sub.add_parser("demo", help="train, simulate with drift, backfill, monitor")
    p.add_argument("--days", type=int, default=21)
    p.add_argument("--rows-per-day", type=int, default=2000)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command in ("train", "register", "simulate"):
        settings = load_settings(push=False)
    elif args.command == "demo":
        settings = load_settings()
    if args.command == "train":
        from driftline import commands

        card = commands.train(settings, model=args.model, seed=args.seed)
        print(
            f"registered {card.name} {card.version} (production); holdout MAE "
            f"{card.metrics.mae:.1f}, R² {card.metrics.r2:.3f}"
        )
    elif args.command == "register":
        from driftline import commands

        categorical = [c for c in args.categorical.split(",") if c]
        card = commands.register(
            settings,
            model=args.model,
            artifact=args.artifact,
            reference=args.reference,
            target=args.target,
            categorical=categorical,
        )
        print(
            f"registered {card.name} {card.version} (production): "
            f"{len(card.features)} features, holdout MAE {card.metrics.mae:.4g}"
        )
    elif args.command == "simulate":
        from driftline import commands

        summary = commands.simulate(
            settings,
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
    elif args.command == "monitor":
        from flows.monitor import monitor

        result = monitor(model=args.model, batch_date=args.date, push=not args.no_push)
        print(
            f"{result.model} {result.batch_date}: {result.n_rows} rows, drifted: "
            f"{', '.join(result.drifted_features) or 'none'}"
        )
    elif args.command == "backfill":
        from flows.backfill import backfill
        from tasks.reports import backfill_lines

        report = backfill(
            model=args.model,
            start=args.start,
            end=args.end,
            prometheus_data=str(args.prometheus_data or "") or None,
            openmetrics=str(args.openmetrics or "") or None,
        )
        print("\n".join(backfill_lines(report)))
        return 1 if report.failed else 0
    elif args.command == "serve":
        from flows.deployments import serve

        serve()
    elif args.command == "stack":
        from driftline import stack

        return stack.main(args.action)
    elif args.command == "demo":
        from driftline.demo import demo

        demo(settings, days=args.days, rows_per_day=args.rows_per_day)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    prefect_environment()
    try:
        return _run(build_parser().parse_args(argv))
    except DriftlineError as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the traceback is in Prefect's log; the user gets one line
        print(f"driftline: error: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
