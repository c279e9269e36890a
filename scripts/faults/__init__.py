"""scripts/chaos.py's parts: a world of processes, what it observes, and the year of faults."""
