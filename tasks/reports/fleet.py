"""How a fleet run reads: its final state's message, its log and its summary artifact."""

from __future__ import annotations

from tasks.results.fleet import FleetReport

# a final state's message names every failed model, cut short beyond this many characters
MESSAGE_CHARACTERS = 2000


def fleet_head(report: FleetReport) -> str:
    """One line: how many models were monitored and which failed."""
    head = (
        f"{report.name} {report.batch_date}: {len(report.succeeded)} of {len(report.nights)} "
        f"model(s) monitored in {report.duration_seconds:.1f} s"
    )
    if not report.failed:
        return head
    return f"{head}; {len(report.failed)} failed: {', '.join(m for m, _ in report.failed)}"


def fleet_message(report: FleetReport) -> str:
    """The final state's message: the head line, then each failed model with its reason."""
    lines = [fleet_head(report), *(f"{model}: {reason}" for model, reason in report.failed)]
    message = "\n".join(lines)
    if len(message) <= MESSAGE_CHARACTERS:
        return message
    return message[: MESSAGE_CHARACTERS - 40].rstrip() + "\n... (every reason in the summary)"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def fleet_markdown(report: FleetReport) -> str:
    """The summary artifact: failed models first with their reasons, then every model's night."""
    lines = [f"# {report.name}: batch {report.batch_date}", "", f"- {fleet_head(report)}"]
    if report.failed:
        lines += ["", "## Failed", "", "| model | reason |", "|---|---|"]
        lines += [f"| {model} | {_cell(reason)} |" for model, reason in report.failed]
    lines += ["", "## Models", "", "| model | version | rows | drifted features | report |"]
    lines.append("|---|---|---:|---|---|")
    for night in report.nights:
        result = night.result
        if result is None:
            lines.append(f"| {night.model} | | | failed | |")
            continue
        drifted = ", ".join(result.drifted_features) or "none"
        lines.append(
            f"| {night.model} | {result.model_version} | {result.n_rows} | {drifted} | "
            f"{night.report_uri or ''} |"
        )
    return "\n".join(lines) + "\n"
