"""Export: the metric catalogue, the Pushgateway transport, and history at event time."""
