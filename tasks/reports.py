"""What people read about a run: the drift table, the summaries, the backfill report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.results import MonitoringResult

if TYPE_CHECKING:
    from tasks.backfill import BackfillReport


def drift_rows(result: MonitoringResult) -> list[dict[str, Any]]:
    """One row per feature and one for the prediction, for the run's table artifact."""
    return [
        {
            "feature": d.feature,
            "test": d.test,
            "score": round(d.score, 4) if d.status == "ok" else None,
            "p_value": d.p_value if d.status == "ok" else None,
            "p_value_adjusted": d.p_value_adjusted if d.status == "ok" else None,
            "missing_ratio": round(d.missing_ratio, 4),
            "drifted": d.is_drifted,
            "status": d.status,
        }
        for d in (*result.features, *([result.prediction] if result.prediction else []))
    ]


def summary_markdown(result: MonitoringResult) -> str:
    drifted = result.drifted_features
    perf = result.current_performance
    lines = [
        f"# {result.model} {result.model_version}: batch {result.batch_date}",
        "",
        f"- rows: {result.n_rows}",
        f"- drifted features: {', '.join(drifted) if drifted else 'none'} "
        f"(of {sum(d.status == 'ok' for d in result.features)} tested)",
    ]
    if result.prediction is not None and result.prediction.status == "ok":
        lines.append(
            f"- prediction drift: D = {result.prediction.score:.3f}, "
            f"p = {result.prediction.p_value:.3g}, drifted: {result.prediction.is_drifted}"
        )
    if perf is not None and perf.metrics is not None:
        ratio = perf.metrics.mae / result.baseline.mae if result.baseline.mae else float("nan")
        lines.append(
            f"- performance on batch {perf.batch_date} ({perf.label_coverage_ratio:.0%} labelled): "
            f"MAE {perf.metrics.mae:.4g} = {ratio:.2f} x baseline {result.baseline.mae:.4g}, "
            f"R² {perf.metrics.r2:.3f}"
        )
    else:
        lines.append(
            f"- performance: no batch of the window has {result.min_label_coverage:.0%} "
            "of its labels yet"
        )
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def backfill_lines(report: BackfillReport) -> list[str]:
    """The report as the command prints it: a head line, each failed day, where history went."""
    days = (report.end - report.start).days + 1
    head = (
        f"backfill {report.model} {report.start}..{report.end}: {len(report.succeeded)} of "
        f"{days} day(s) replayed in {report.duration_seconds:.1f} s, {len(report.failed)} failed"
    )
    tail = [f"history: {report.history}"] if report.history else []
    return [head, *(f"  {day} failed: {reason}" for day, reason in report.failed), *tail]


def backfill_markdown(report: BackfillReport) -> str:
    lines = [f"# Backfill of {report.model}: {report.start} to {report.end}", ""]
    lines += [f"- {line.strip()}" for line in backfill_lines(report)[:1]]
    if report.history:
        lines.append(f"- history: {report.history}")
    if report.failed:
        lines += ["", "| day | reason |", "|---|---|"]
        lines += [f"| {day} | {reason.replace('|', '/')} |" for day, reason in report.failed]
    return "\n".join(lines) + "\n"
