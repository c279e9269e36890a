"""The fault suite through Evidently's and NannyML's data-quality checks; prints one line of JSON.

Neither library is a dependency of driftline: run this in a throwaway environment, on the days
`scripts/quality_suite.py --write DIR` wrote (docs/measurements.md has the exact commands):

    python scripts/quality_suite_others.py DIR --tool evidently   # evidently 0.7.23
    NML_DISABLE_USAGE_LOGGING=1 python scripts/quality_suite_others.py DIR --tool nannyml  # 0.13.1

Evidently: `Report([DataSummaryPreset()], include_tests=True)` per day against the reference,
the tests it derives from the reference (row count, missing values, min/max, mean, std,
quantiles per column within +-10%, duplicated rows, constant columns); a day is flagged when a
test fails. NannyML: its data-quality calculators (missing values, unseen values, numerical
range, and the row count, median and standard deviation summaries) chunked by day, fitted on
the suite's first 30 clean days (NannyML's reference is a known-good production period) and
run on the rest; a day is flagged when any calculator alerts. A fault is "on its column" when a
flag names the fault's column (for the batch faults: the row count or the duplicated rows).
Each tool is scored twice: with all its checks, and with its data-quality core (without the
checks of a column's mean, median, standard deviation and quantiles).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

NUMERIC = ["area_m2", "rooms", "year_built", "distance_km", "temperature_c"]
CATEGORICAL = ["city", "energy_label", "kind"]
BATCH_WORDS = ("Row count", "Duplicated row", "rows_count")
DRIFT_LIKE = (
    "Mean value",
    "Std value",
    "Quantile",
    "SummaryStatsMedianCalculator",
    "SummaryStatsStdCalculator",
)


def evidently_flags(directory: Path) -> dict[str, list[str]]:
    from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found]
    from evidently.presets import DataSummaryPreset  # type: ignore[import-not-found]

    definition = DataDefinition(
        numerical_columns=[*NUMERIC, "prediction"], categorical_columns=CATEGORICAL
    )
    reference = Dataset.from_pandas(
        pd.read_parquet(directory / "reference.parquet").drop(columns=["row_id", "scored_at"]),
        data_definition=definition,
    )
    flags = {}
    for path in sorted((directory / "days").glob("*.parquet")):
        current = pd.read_parquet(path).drop(columns=["row_id", "scored_at"])
        snapshot = Report([DataSummaryPreset()], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition), reference
        )
        failed = [t["name"] for t in snapshot.dict()["tests"] if "SUCCESS" not in str(t["status"])]
        flags[path.stem] = failed
    return flags


def nannyml_flags(directory: Path, reference_days: int = 30) -> dict[str, list[str]]:
    import nannyml as nml  # type: ignore[import-not-found]

    frame = pd.concat(
        [pd.read_parquet(p) for p in sorted((directory / "days").glob("*.parquet"))],
        ignore_index=True,
    )
    frame["scored_at"] = pd.to_datetime(frame["scored_at"]).dt.tz_localize(None)
    split = frame["scored_at"].min().normalize() + pd.Timedelta(days=reference_days)
    reference, analysis = frame[frame.scored_at < split], frame[frame.scored_at >= split]
    chunking = {"timestamp_column_name": "scored_at", "chunk_period": "D"}
    calculators = [
        nml.MissingValuesCalculator(column_names=NUMERIC + CATEGORICAL, **chunking),
        nml.UnseenValuesCalculator(column_names=CATEGORICAL, **chunking),
        nml.NumericalRangeCalculator(column_names=NUMERIC, **chunking),
        nml.SummaryStatsRowCountCalculator(**chunking),
        nml.SummaryStatsMedianCalculator(column_names=NUMERIC, **chunking),
        nml.SummaryStatsStdCalculator(column_names=NUMERIC, **chunking),
    ]
    flags: dict[str, list[str]] = {}
    for calculator in calculators:
        calculator.fit(reference)
        table = calculator.calculate(analysis).filter(period="analysis").to_df()
        keys = table[("chunk", "key")].astype(str).str[:10]
        for column, what in {c[0]: c for c in table.columns if c[1] == "alert"}.items():
            name = f"{type(calculator).__name__} {column}"
            for key, alert in zip(keys, table[what], strict=True):
                flags.setdefault(key, [])
                if bool(alert):
                    flags[key].append(name)
    return flags


def score(flags: dict[str, list[str]], faults: dict[str, dict[str, str]]) -> dict[str, Any]:
    def on_column(found: list[str], feature: str) -> bool:
        if feature == "_batch":
            return any(word in f for f in found for word in BATCH_WORDS)
        return any(feature in f for f in found)

    per_fault = {
        fault["name"]: {
            "day": day,
            "caught": bool(flags.get(day)),
            "on_its_column": on_column(flags.get(day, []), fault["feature"]),
        }
        for day, fault in faults.items()
        if day in flags
    }
    clean = [day for day in flags if day not in faults]
    alarms = [day for day in clean if flags[day]]
    return {
        "faults": per_fault,
        "caught": sum(f["caught"] for f in per_fault.values()),
        "on_its_column": sum(f["on_its_column"] for f in per_fault.values()),
        "clean_days": len(clean),
        "false_alarm_days": len(alarms),
        "flags_per_clean_day": round(sum(len(flags[d]) for d in clean) / max(1, len(clean)), 1),
        # which checks flag clean days, on how many of them (the five commonest)
        "clean_days_flagged_by": Counter(
            flag for day in clean for flag in set(flags[day])
        ).most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--tool", choices=("evidently", "nannyml"), required=True)
    args = parser.parse_args()
    faults = json.loads((args.directory / "faults.json").read_text())
    flags = (evidently_flags if args.tool == "evidently" else nannyml_flags)(args.directory)
    # without the checks of a column's mean, median, spread and quantiles, which are drift
    # checks more than quality checks: what is left is the tool's data-quality core
    core = {day: [f for f in found if not f.startswith(DRIFT_LIKE)] for day, found in flags.items()}
    print(json.dumps({"tool": args.tool, "all": score(flags, faults), "core": score(core, faults)}))


if __name__ == "__main__":
    main()
