from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings
from tests.support.github_hooks import private_key_pem


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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.internal:5432/click",
        "postgres://app@db/click?sslmode=require&application_name=click-deploy",
        "postgresql://app@[::1]:5432/click",
        "postgresql://app@db1:5432,db2:5433/click?target_session_attrs=read-write",
        "postgresql:///click?host=/var/run/postgresql",
        "postgresql://app:p%2Fw%40rd@db/click",
    ],
)
def test_database_urls_asyncpg_takes_are_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == url


def test_a_database_url_password_is_never_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unescaped '/' in the password makes the rest look like host and port.
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:se/cret-pw@db/click")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DATABASE_URL" in str(caught.value) and "cret-pw" not in str(caught.value)


def test_good_values_of_checked_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    key = private_key_pem()
    values = {
        "REGISTRY_URL": "http://localhost:5000",
        "REGISTRY_PROJECT": "team/click-deploy_images",
        "REGISTRY_USERNAME": "robot$deploy",
        "REGISTRY_PASSWORD": "pw",
        "PUBLIC_URL": "https://deploy.example.com:8443/bot",
        "GITHUB_API_URL": "https://ghe.example.com/api/v3",
        "GITHUB_APP_ID": " 12345 ",
        "GITHUB_PRIVATE_KEY": key,
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "BASE_IMAGE_MIRROR": "https://harbor.example.com/dockerhub/",
        "BASE_IMAGE_NODE": "localhost:5000/library/node:{version}-bookworm-slim",
        "BASE_IMAGE_RUNTIME": "gcr.io/distroless/static@sha256:" + "a" * 64,
        "WORKER_PIPELINE": "tests.support.pipelines:scripted",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.github_app_id == "12345"
    assert settings.github_private_key is not None
    assert settings.github_private_key.get_secret_value() == key
    assert settings.registry_project == "team/click-deploy_images"


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REGISTRY_URL", "HTTP_PORT", "GITHUB_PRIVATE_KEY"):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.database_url is None and settings.registry_url is None
    assert settings.http_port == 8080 and settings.github_private_key is None


def test_an_encrypted_or_non_rsa_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    encrypted = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        .decode()
    )
    elliptic = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    monkeypatch.setenv("GITHUB_APP_ID", "1")
    for key, reason in ((encrypted, "encrypted"), (elliptic, "RSA")):
        monkeypatch.setenv("GITHUB_PRIVATE_KEY", key)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "GITHUB_PRIVATE_KEY" in str(caught.value) and reason in str(caught.value)
        assert "BEGIN" not in str(caught.value)
