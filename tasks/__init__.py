"""The work of driftline by concern, one layer per sub-package, each importing only those below:
stats at the bottom; performance on it; edge, models and results on those; export and reports on
results; day, the engine and its Prefect tasks, on top."""
