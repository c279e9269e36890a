"""How a backfill reads: on the terminal, in the run's log, as its artifact."""

from __future__ import annotations

from tasks.results.backfill import BackfillReport


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
