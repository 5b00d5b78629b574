"""The one configuration module: defaults, conversion, and errors that name the variable."""

from __future__ import annotations

import pytest

from retention.settings import (
    PROJECT_ROOT,
    SettingsError,
    all_settings,
    load_settings,
    settings_table_markdown,
)


def test_every_setting_has_env_default_and_help() -> None:
    names = [s.name for s in all_settings()]
    envs = [s.env for s in all_settings()]
    assert len(names) == len(set(names)), "duplicate setting name"
    assert len(envs) == len(set(envs)), "duplicate environment variable"
    for s in all_settings():
        assert s.env.isupper() and s.help, s


def test_defaults_load_and_convert() -> None:
    s = load_settings({})
    assert s.embedded_port == 54329
    assert s.state_dir == PROJECT_ROOT / ".state"
    assert s.using_embedded_warehouse
    assert s.sendgrid_batch_size == 1000
    assert s.team_email_map["billing"].endswith("@example.com")


def test_environment_overrides_defaults(tmp_path) -> None:
    s = load_settings({"RETENTION_PG_PORT": "6000", "RETENTION_STATE_DIR": str(tmp_path)})
    assert s.embedded_port == 6000
    assert s.state_dir == tmp_path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RETENTION_PG_PORT": "five"}, "RETENTION_PG_PORT='five' is not a valid int"),
        ({"RETENTION_TIMEZONE": "Mars/Olympus"}, "RETENTION_TIMEZONE='Mars/Olympus' is not a valid tz"),
        ({"RETENTION_QUIET_START": "25"}, "RETENTION_QUIET_START=25 must be an hour 0-23"),
        ({"RETENTION_SENDGRID_BATCH": "5000"}, "RETENTION_SENDGRID_BATCH must be between 1 and 1000"),
        ({"RETENTION_GLOBAL_HOLDOUT": "1.5"}, "RETENTION_GLOBAL_HOLDOUT=1.5 must be in [0, 1)"),
        ({"WAREHOUSE_URL": "mysql://u:p@h/db"}, "WAREHOUSE_URL must be a postgresql:// URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert message in str(err.value)


def test_bad_team_email_pair_is_named() -> None:
    s = load_settings({"RETENTION_TEAM_EMAILS": "support=ok@example.com,billing"})
    with pytest.raises(SettingsError, match="bad pair 'billing'"):
        _ = s.team_email_map


def test_password_never_echoed_in_url_error() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"WAREHOUSE_URL": "mysql://user:secret@db.example.com/x"})
    assert "secret" not in str(err.value)


def test_readme_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [s.env for s in all_settings() if f"`{s.env}`" not in readme]
    assert not missing, f"README.md does not document {missing}; paste `settings_table_markdown()`"
    assert settings_table_markdown().count("\n") == len(all_settings()) + 1
