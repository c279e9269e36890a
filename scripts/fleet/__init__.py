"""scripts/scale.py's parts: the fleet of models, the processes it runs and what it measures."""
