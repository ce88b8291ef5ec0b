from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_usable() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.worker_slots == 2
    assert settings.effective_build_dir == settings.data_dir / "builds"


def test_values_come_from_the_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("WORKER_SLOTS=7\nBUILD_DIR=/srv/builds\n")
    monkeypatch.setenv("WORKER_SLOTS", "5")  # the environment wins over .env
    settings = load_settings()
    assert settings.worker_slots == 5
    assert str(settings.effective_build_dir) == "/srv/builds"


def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_SLOTS", "lots")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: WORKER_SLOTS: ")
    assert "valid integer" in message


def test_several_bad_values_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_SLOTS", "0")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "WORKER_SLOTS: Input should be greater than or equal to 1" in message
    assert "LOG_LEVEL: " in message


def test_heartbeat_must_fit_inside_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_LEASE_SECONDS", "5")
    monkeypatch.setenv("WORKER_HEARTBEAT_SECONDS", "5")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "WORKER_HEARTBEAT_SECONDS must be shorter than WORKER_LEASE_SECONDS" in message


def test_secrets_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_USERNAME", "robot")
    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pg-secret@db/app")
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2-secret" not in shown and "pg-secret" not in shown
    assert settings.registry_password is not None
    assert settings.registry_password.get_secret_value() == "hunter2-secret"

    monkeypatch.setenv("WORKER_SLOTS", "x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "hunter2-secret" not in message and "pg-secret" not in message


def test_backoff_doubles_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_BACKOFF_SECONDS", "5")
    monkeypatch.setenv("RETRY_BACKOFF_MAX_SECONDS", "30")
    settings = load_settings()
    assert [settings.backoff_seconds(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]
