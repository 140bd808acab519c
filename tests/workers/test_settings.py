"""The service's settings: defaults, the environment, flags over it, and one clear error per
bad variable, from `load_settings` and from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.test_cli import ridgerider
from workers.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"RIDGERIDER_{name.upper()}", raising=False)


def test_the_defaults():
    settings = load_settings()
    assert settings.database_url == "sqlite:///ridgerider.db"
    assert settings.artifacts == Path("ridgerider-artifacts")
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert (settings.stale_after, settings.max_active_jobs, settings.server_threads) == (60, 20, 2)
    assert settings.visibility_timeout == 2 * settings.task_time_limit
    assert settings.model_fields_set == set()  # nothing was given


def test_variables_are_read_and_flags_override_them(monkeypatch, tmp_path):
    monkeypatch.setenv("RIDGERIDER_ARTIFACTS", str(tmp_path / "from-env"))
    monkeypatch.setenv("RIDGERIDER_STALE_AFTER", "7.5")
    monkeypatch.setenv("RIDGERIDER_GPU_QUEUE", "1")
    monkeypatch.setenv("RIDGERIDER_DATABASE_URL", "env.db")
    settings = load_settings(database_url="flag.db", broker_url=None)
    assert settings.artifacts == tmp_path / "from-env"
    assert settings.stale_after == 7.5 and settings.gpu_queue is True
    assert settings.database_url == "flag.db"  # the flag wins; a flag left out (None) does not


def test_the_environment_a_child_process_gets_gives_the_same_settings(monkeypatch):
    settings = load_settings(api_key="rr_secret", stale_after=3, mlflow_tracking_uri="file:///m")
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == settings
    assert settings.environment()["RIDGERIDER_API_KEY"] == "rr_secret"
    assert "rr_secret" not in repr(settings)  # a key is never printed


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("RIDGERIDER_STALE_AFTER", "-1", "(seconds, > 0)"),
        ("RIDGERIDER_TASK_TIME_LIMIT", "an hour", "(seconds, > 0)"),
        ("RIDGERIDER_MAX_ACTIVE_JOBS", "0", "(an integer in [1, 100000])"),
        ("RIDGERIDER_SERVER_THREADS", "257", "(an integer in [1, 256])"),
        ("RIDGERIDER_MAX_PARAMETERS", "1.5", "(an integer in [1, 1000000000000])"),
        ("RIDGERIDER_GPU_QUEUE", "maybe", "the `gpu` queue"),
    ],
)
def test_a_bad_variable_is_one_error_naming_it_and_its_range(monkeypatch, variable, value, allowed):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.count("\n") == 0
    assert message.startswith(f"{variable} = {value!r} is not allowed: ")
    assert allowed in message


def test_each_bad_variable_has_its_own_line(monkeypatch):
    monkeypatch.setenv("RIDGERIDER_STREAMS", "-3")
    monkeypatch.setenv("RIDGERIDER_SWEEP_EVERY", "0")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    lines = str(raised.value).splitlines()
    assert sorted(line.split(" = ")[0] for line in lines) == [
        "RIDGERIDER_STREAMS",
        "RIDGERIDER_SWEEP_EVERY",
    ]


def test_the_command_line_exits_2_naming_the_bad_variable(tmp_path):
    result = ridgerider("status", "1", cwd=tmp_path, env={"RIDGERIDER_STREAM_SECONDS": "100000"})
    assert result.returncode == 2
    assert "RIDGERIDER_STREAM_SECONDS = '100000' is not allowed" in result.stderr
    assert "[1, 86400]" in result.stderr
