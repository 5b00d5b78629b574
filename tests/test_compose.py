"""docker-compose.yml is the production stack: valid against the Compose spec and complete.

No Docker engine runs here, so the file is checked against the published JSON Schema
(`../shared/specs/compose-spec.json`) and for the wiring the pipeline needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from retention.settings import PROJECT_ROOT, all_settings

SPEC = PROJECT_ROOT.parent / "shared" / "specs" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_validates_against_the_spec(compose: dict) -> None:
    schema = json.loads(SPEC.read_text())
    jsonschema.Draft7Validator(schema).validate(compose)


def test_invalid_compose_is_rejected_by_the_same_check(compose: dict) -> None:
    schema = json.loads(SPEC.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["postgres"]["healthcheck"]["interval"] = ["not", "a", "duration"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_airflow_component_and_the_webhook_are_there(compose: dict) -> None:
    services = compose["services"]
    for name in (
        "postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "webhook",
    ):
        assert name in services, name
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        svc = services[name]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in svc


def test_environment_uses_project_settings_and_no_secrets_inline(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    known = {s.env for s in all_settings()}
    project_vars = {k for k in env if k.startswith(("RETENTION_", "SENDGRID_")) or k == "WAREHOUSE_URL"}
    assert project_vars <= known, f"compose sets unknown settings: {project_vars - known}"
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False" and env["DO_NOT_TRACK"] == "1"
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD" in text and "${SENDGRID_API_KEY" in text


def test_mounted_files_and_build_inputs_exist(compose: dict) -> None:
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), source
        build = svc.get("build")
        if build:
            assert (PROJECT_ROOT / build["context"] / build["dockerfile"]).exists()
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile, "the image must install from the lock file"


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = Path(PROJECT_ROOT / ".dockerignore").read_text().split()
    assert ".state" in ignored and ".venv" in ignored
