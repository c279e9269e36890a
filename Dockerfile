# driftline: the Prefect deployments (`driftline serve`) and the CLI, installed from uv.lock.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv
# promtool writes the TSDB blocks of `driftline backfill --prometheus-data`.
FROM prom/prometheus:v2.42.0 AS prometheus

FROM python:3.11-slim-bookworm
COPY --from=uv /uv /usr/local/bin/uv
COPY --from=prometheus /bin/promtool /usr/local/bin/promtool

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/driftline \
    PATH=/opt/driftline/bin:$PATH \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/data/prefect

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra s3 --no-install-project
COPY . .
RUN uv sync --frozen --no-dev --extra s3

# Run as the same uid as the Prometheus image (nobody), so backfilled blocks on the shared
# volume stay deletable by Prometheus' compaction and retention.
RUN mkdir -p /data/lake /data/registry /data/prefect /prometheus \
    && chown -R 65534:65534 /data /prometheus
USER 65534:65534

CMD ["driftline", "serve"]
