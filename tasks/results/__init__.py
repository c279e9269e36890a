"""Results: the typed outcome of a day and of a backfill, and their stored form."""
