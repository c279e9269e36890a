"""What people read about a run: the drift table, the summaries, the backfill report, and the
day's report with its pictures (Markdown for the Prefect artifact, HTML for the lake)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.settings import DEFAULT_ALERT_THRESHOLDS, AlertThresholds, DriftRule
from model_registry.task import ClassifierHoldoutMetrics
from tasks.performance.window import RegressionMetrics
from tasks.reports import pictures as report_pictures
from tasks.reports import plots
from tasks.reports.classifier import classifier_facts
from tasks.reports.numbers import p_text, percent, round_sig, sig3
from tasks.results.day import MonitoringResult
from tasks.stats.drift import FeatureDrift
from tasks.stats.sketches import Sketch


def drift_rows(result: MonitoringResult) -> list[dict[str, Any]]:
    """One row per feature and one for the prediction, for the run's table artifact: p-values
    to 3 significant digits, scores and shares to 4 decimals (result.json keeps them exact)."""
    return [
        {
            "feature": d.feature,
            "test": d.test,
            "score": round(d.score, 4) if d.status == "ok" else None,
            "p_value": round_sig(d.p_value) if d.status == "ok" else None,
            "p_value_adjusted": round_sig(d.p_value_adjusted) if d.status == "ok" else None,
            "missing_ratio": round(d.missing_ratio, 4),
            "normal_upper": None if math.isnan(d.normal_upper) else round(d.normal_upper, 4),
            "drifted": d.is_drifted,
            "status": d.status,
        }
        for d in (
            *result.features,
            *([result.prediction] if result.prediction else []),
            *result.probabilities,  # a classifier's class probabilities
        )
    ]


def quality_lines(result: MonitoringResult) -> list[str]:
    """The data-quality findings, one line each (muted ones said so), or that there were none."""
    checks = sum(len(c) for c in result.data_quality_checked.values())
    if not result.data_quality:
        return [f"data quality: no finding ({checks} checks)"] if checks else []
    lines = []
    for f in result.data_quality:
        value = f"{f.value:,.0f}" if f.check == "row_count" else f"{f.value:.4g}"
        lines.append(
            f"data quality: {f.feature} {f.check} = {value} (expected {f.expected})"
            + (f": {f.detail}" if f.detail else "")
            + (" [muted by the policy]" if f.muted else "")
        )
    return lines


def summary_markdown(
    result: MonitoringResult, thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS
) -> str:
    drifted = result.drifted_features
    lines = [
        f"# {result.model} {result.model_version}: batch {result.batch_date}",
        "",
        *[f"- {line}" for line in quality_lines(result)],
        f"- rows: {result.n_rows}",
        f"- drifted features: {', '.join(drifted) if drifted else 'none'} "
        f"(of {sum(d.status == 'ok' for d in result.features)} tested)",
    ]
    if result.prediction is not None and result.prediction.status == "ok":
        lines.append(
            f"- prediction drift: D = {result.prediction.score:.3f}, "
            f"p = {result.prediction.p_value:.3g}, drifted: {result.prediction.is_drifted}"
        )
    lines += [f"- {fact}" for fact in performance_facts(result, thresholds)]
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def performance_facts(
    result: MonitoringResult, thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS
) -> list[str]:
    """The batch's estimated MAE with its band, the realized MAE where labels allow it, and
    which of the two to trust when: for the summary and the day's report (a classifier's:
    tasks/reports/classifier.py)."""
    if isinstance(result.baseline, ClassifierHoldoutMetrics):
        return classifier_facts(result, thresholds)
    covered = percent(result.min_label_coverage)
    baseline = result.baseline.mae

    def times_baseline(mae: float) -> str:
        return f"{sig3(mae / baseline if baseline else math.nan)} x the baseline {sig3(baseline)}"

    estimate = result.estimate
    if estimate is not None:
        sampled = (
            f", predicted on {estimate.n_sampled:,} of its {estimate.n_rows:,} rows"
            if estimate.n_sampled < estimate.n_rows
            else ""
        )
        facts = [
            f"this batch, before its labels: estimated MAE {sig3(estimate.mae)} (band "
            f"{sig3(estimate.mae_lower)} to {sig3(estimate.mae_upper)}) = "
            f"{times_baseline(estimate.mae)} (alert when the band's lower end is above "
            f"{thresholds.estimate_alert_ratio:g} x), estimated RMSE {sig3(estimate.rmse)}, from "
            f"its features and predictions{sampled}"
        ]
    else:
        facts = ["this batch: estimated MAE: none (no rows, or no loss estimator for the version)"]
    own = next((p for p in result.performance if p.batch_date == result.batch_date), None)
    perf = result.current_performance
    if own is None or own is not perf:
        labelled = percent(own.label_coverage_ratio if own is not None else 0.0)
        facts.append(f"this batch: realized MAE not known yet ({labelled} labelled)")
    if perf is not None and isinstance(perf.metrics, RegressionMetrics):
        facts.append(
            f"realized MAE of batch {perf.batch_date} ({percent(perf.label_coverage_ratio)} "
            f"labelled): {sig3(perf.metrics.mae)} = {times_baseline(perf.metrics.mae)} (alert "
            f"above {thresholds.performance_alert_ratio:g} x), R² {sig3(perf.metrics.r2)}"
        )
    else:
        facts.append(f"realized MAE: no batch of the window has {covered} of its labels yet")
    check = result.band_check
    if check is not None:
        where = "OUTSIDE" if check.is_outside_band else "within"
        facts.append(
            f"realized MAE of batch {check.batch_date} {sig3(check.realized_mae)} is {where} the "
            f"band estimated for it before its labels ({sig3(check.mae_lower)} to "
            f"{sig3(check.mae_upper)})"
            + (
                ": the error moved in a way its inputs do not show, the sign of concept drift "
                "the estimate cannot see"
                if check.is_outside_band
                else ""
            )
        )
    facts.append(
        "which to trust: the estimate, the morning after a batch: it follows the model's error "
        "when the inputs shift (covariate shift) but cannot see concept drift: when the relation "
        "between features and target changes, features and predictions look as before and the "
        f"estimate stays put while the real error grows. From {covered} label coverage the "
        "realized MAE is the one to trust; it confirms or overrules the estimate"
    )
    return facts


# --- the day's report, with pictures ----------------------------------------------------------

PICTURE_ALL_UP_TO = 4  # a model with this many features or fewer has every one pictured
PICTURE_AT_LEAST = 3  # else the drifted ones, topped up by the highest scores to this many
PICTURE_AT_MOST = 12  # the highest-scoring drifted features beyond this are named, not drawn


def rule_text(rule: DriftRule, *, normal_days: bool = False) -> str:
    """The drift rule, once, in words; `normal_days` when the reference's days taught it how
    much a normal day's score varies."""
    learned = (
        " Where the reference's rows carry their days, a feature must also score above what a "
        "normal day of this size reaches (the column 'normal day'): the largest shift seen "
        "from one reference day to the next, with this batch's sampling noise."
    )
    return (
        "A feature counts as drifted when its Benjamini-Hochberg adjusted p-value (over the "
        f"model's features) is below {rule.alpha:g} and its score is at least {rule.min_score:g}: "
        "the Kolmogorov-Smirnov distance D for numbers (the largest gap between the two "
        "cumulative distributions, drawn in red) and the total variation distance for "
        "categories (the share of rows that moved category). The prediction is tested alone, "
        "by the same rule on its raw p-value." + (learned if normal_days else "")
    )


def pictured_features(result: MonitoringResult) -> list[FeatureDrift]:
    """Which features the report draws, in the card's order (see the PICTURE_* constants)."""
    features = list(result.features)
    if len(features) <= PICTURE_ALL_UP_TO:
        return features

    def by_score(f: FeatureDrift) -> float:
        return -f.score if math.isfinite(f.score) else math.inf

    drifted = sorted((f for f in features if f.is_drifted), key=by_score)[:PICTURE_AT_MOST]
    chosen = {f.feature for f in drifted}
    if len(chosen) < PICTURE_AT_LEAST:
        others = sorted((f for f in features if f.feature not in chosen), key=by_score)
        chosen |= {f.feature for f in others[: PICTURE_AT_LEAST - len(chosen)]}
    return [f for f in features if f.feature in chosen]


@dataclass(frozen=True)
class DayReport:
    """One run's report: its result, the pictures drawn of it, and the rule it applied."""

    result: MonitoringResult
    rule: DriftRule
    pictured: tuple[str, ...]
    drift_svg: bytes | None
    performance_svg: bytes | None
    thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS

    @classmethod
    def draw(
        cls,
        result: MonitoringResult,
        sketches: Mapping[str, Sketch],
        rule: DriftRule,
        thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS,
    ) -> DayReport:
        """Draw the pictures (a picture that fails is left out, never the report)."""
        items: list[tuple[FeatureDrift, Sketch]] = [
            (f, sketches[f.feature]) for f in pictured_features(result) if f.feature in sketches
        ]
        if result.prediction is not None and result.prediction.feature in sketches:
            items.append((result.prediction, sketches[result.prediction.feature]))
        drift_svg = (
            plots.drawn_or_none(lambda: report_pictures.drift_picture(items)) if items else None
        )
        return cls(
            result=result,
            rule=rule,
            pictured=tuple(f.feature for f, _ in items),
            drift_svg=drift_svg,
            performance_svg=plots.drawn_or_none(
                lambda: report_pictures.performance_picture(result, thresholds)
            ),
            thresholds=thresholds,
        )

    # the content, once, for both renderings
    def _headline(self) -> str:
        r = self.result
        drifted = r.drifted_features
        tested = sum(d.status == "ok" for d in r.features)
        text = (
            f"Drifted: {', '.join(drifted)} ({len(drifted)} of {tested} features tested)."
            if drifted
            else f"No feature drifted ({tested} tested)."
        )
        p = r.prediction
        if p is not None and p.status == "ok":
            verdict = "drifted" if p.is_drifted else "did not drift"
            text += f" The prediction {verdict} (D = {sig3(p.score)}, p {_p(p.p_value)})."
        return text

    def _caption(self) -> str:
        names = [n for n in self.pictured if n != "prediction"]
        shown = ", ".join(names) if names else "no feature"
        tail = " and the prediction" if "prediction" in self.pictured else ""
        return f"Reference against this batch: {shown}{tail}"

    def _rule_text(self) -> str:
        return rule_text(self.rule, normal_days=self._normal_days())

    def _normal_days(self) -> bool:
        drifts = (*self.result.features, self.result.prediction)
        return any(d is not None and not math.isnan(d.normal_upper) for d in drifts)

    def _table(self) -> tuple[list[str], list[list[str]]]:
        normal_days = self._normal_days()
        head = ["feature", "test", "score", "p", "adjusted p", "missing", "verdict"]
        if normal_days:
            head.insert(5, "normal day")
        rows = []
        for d in (*self.result.features, self.result.prediction, *self.result.probabilities):
            if d is None:
                continue
            ok = d.status == "ok"
            verdict = "DRIFTED" if d.is_drifted else ("no" if ok else "too little data")
            rows.append(
                [
                    d.feature,
                    "KS" if d.test == "ks" else "chi-square",
                    sig3(d.score) if ok else "-",
                    p_text(d.p_value) if ok else "-",
                    p_text(d.p_value_adjusted) if ok else "-",
                    percent(d.missing_ratio),
                    verdict,
                ]
            )
            if normal_days:
                upper = d.normal_upper
                rows[-1].insert(5, f"up to {sig3(upper)}" if ok and not math.isnan(upper) else "-")
        return head, rows

    def _facts(self) -> list[str]:
        r = self.result
        facts = [f"rows: {r.n_rows:,}", *performance_facts(r, self.thresholds)]
        if r.unmatched_labels:
            facts.append(f"labels matching no scored row: {r.unmatched_labels:,}")
        facts += [f"warning: {w}" for w in r.warnings]
        return facts

    def markdown(self, report_uri: str | None = None) -> str:
        """The Prefect artifact: pictures inline (data: URIs), then the table and the facts."""
        r = self.result
        lines = [f"# {r.model} {r.model_version}: batch {r.batch_date}", ""]
        quality = [html.escape(q, quote=False).replace("\n", " ") for q in quality_lines(r)]
        lines += [*[f"- {q}" for q in quality], ""] if quality else []
        lines += [self._headline(), ""]
        lines += [self._rule_text(), ""]
        if self.drift_svg:
            lines += [f"![{_md(self._caption())}]({_data_uri(self.drift_svg)})", ""]
        if self.performance_svg:
            lines += [f"![Performance window]({_data_uri(self.performance_svg)})", ""]
        head, rows = self._table()
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
        facts = [html.escape(fact, quote=False).replace("\n", " ") for fact in self._facts()]
        lines += ["", *[f"- {fact}" for fact in facts]]
        if report_uri:
            shown = report_uri.replace("`", "'")
            lines.append(f"- the same report in the lake: [`{shown}`]({_link(report_uri)})")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """The report as one self-contained HTML page (pictures inline)."""
        r = self.result
        title = f"{r.model} {r.model_version}: batch {r.batch_date}"
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            *_quality_html(quality_lines(r)),
            f"<p class=headline>{html.escape(self._headline())}</p>",
            f"<p class=rule>{html.escape(self._rule_text())}</p>",
        ]
        for svg, caption in (
            (self.drift_svg, self._caption()),
            (self.performance_svg, "Performance window"),
        ):
            if svg:
                parts.append(
                    f'<figure><img src="{_data_uri(svg)}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        head, rows = self._table()
        parts.append("<table><thead><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in head]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            drifted = ' class="drifted"' if row[-1] == "DRIFTED" else ""
            cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
            parts.append(f"<tr{drifted}>{cells}</tr>")
        parts.append("</tbody></table><ul>")
        parts += [f"<li>{html.escape(fact)}</li>" for fact in self._facts()]
        parts.append("</ul></body></html>")
        return "\n".join(parts) + "\n"


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;"
    "max-width:1040px;color:#24292e;padding:0 1em}"
    "h1{font-size:1.4em}.headline{font-size:1.1em;font-weight:600}.rule{color:#57606a}"
    "figure{margin:1.2em 0}img{max-width:100%;height:auto}"
    "figcaption{color:#57606a;font-size:.9em}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left}"
    "tr.drifted td{background:#ffebe9}.quality{font-weight:600}"
)


def _quality_html(lines: list[str]) -> list[str]:
    if not lines:
        return []
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return [f"<ul class=quality>{items}</ul>"]


def _p(p: float) -> str:
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


def _data_uri(svg: bytes) -> str:
    # an <img> never runs what an SVG holds; Prefect's artifact page shows it like a PNG
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or image alt text: no HTML, no line break, no
    column break. Nothing else is escaped: Prefect's renderer would show the backslashes."""
    out = html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
    return out.replace("[", "(").replace("]", ")")


def _link(uri: str) -> str:
    """A lake location as a link: local paths as file:// URLs."""
    from urllib.parse import quote

    if "://" in uri:
        return quote(uri, safe=":/=")
    return "file://" + quote(uri, safe="/=")
