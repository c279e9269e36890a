"""Reports: what people read about a run (artifacts, the HTML report, its pictures)."""
