"""Models: fitting the example model, preparing a version for the registry, simulating batches."""
