"""The project's tools (benchmarks, calibration, the dashboard picture): run as scripts,
importable for their tests."""
