"""The private PostgreSQL cluster and Prefect server of the tests: driftline/stack/postgres.py."""

from driftline.stack.postgres import Cluster, PrefectServer, postgres, prefect_server, rss_bytes

__all__ = ["Cluster", "PrefectServer", "postgres", "prefect_server", "rss_bytes"]
