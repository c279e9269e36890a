"""The command line's arguments: every command, its flags and their defaults."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from core.errors import InputError
from core.settings import DEFAULT_MODEL

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
        description="driftline: batch ML-model monitoring, from a Parquet lake to Prometheus.",
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
        help="default: inferred (a classifier when the artifact has predict_proba and classes_, "
        "or the reference's predictions are classes)",
    )
    p.add_argument(
        "--date-column",
        metavar="COLUMN",
        help="the column of each reference row's day (default: batch_date or scored_at, if "
        "present): the monitor learns from it how much a normal day varies",
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

    p = sub.add_parser("policy", help="show or set a model's monitoring policy")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    show = actions.add_parser("show", help="print the policy in force")
    show.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    put = actions.add_parser("set", help="store FILE as the policy's next version and use it")
    put.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    put.add_argument("file", type=Path, metavar="FILE", help="the policy, JSON or YAML")

    p = sub.add_parser("serve", help="run the Prefect deployments on their schedules (02:00 UTC)")
    p.add_argument(
        "--slices",
        type=int,
        metavar="N",
        help="run the models (DRIFTLINE_MODELS) as N nightly fleet runs, one task per model "
        "(default: one nightly run per model)",
    )

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
