"""The Grafana dashboard drawn without Grafana: its queries' data (snapshot) and its panels."""
