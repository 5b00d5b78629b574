# Production image of the retention pipeline: Airflow 3.3 + the project, installed from the lock file.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=1 \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    GX_ANALYTICS_ENABLED=false \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/retention/plugins:/opt/retention

RUN useradd --create-home --uid 50000 airflow
WORKDIR /opt/retention
COPY requirements.lock pyproject.toml ./
RUN pip install uv==0.13.8 && uv pip sync --system requirements.lock
COPY . .
RUN uv pip install --system --no-deps -e . \
    && python -m retention.cli dbt-parse \
    && chown -R airflow /opt/retention
USER airflow
