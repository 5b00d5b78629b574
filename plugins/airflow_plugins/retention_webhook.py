"""Airflow 3 plugin: mounts the SendGrid Event Webhook receiver on Airflow's API server.

SendGrid then posts to ``https://<airflow>/retention/sendgrid/events``. The same app also runs
stand-alone (``retention webhook serve``, the ``webhook`` service in docker-compose.yml).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from retention.outreach.webhook import create_app


class RetentionWebhookPlugin(AirflowPlugin):
    name = "retention_webhook"
    fastapi_apps = [  # noqa: RUF012 (Airflow reads a class attribute)
        {"app": create_app(), "url_prefix": "/retention", "name": "SendGrid Event Webhook"},
    ]
