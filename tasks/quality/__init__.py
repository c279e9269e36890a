"""Data-quality checks: what a batch's columns are expected to look like, learned from the
reference, and the nightly findings against it (docs/contract.md, "Data quality")."""
