"""Settings: database URL normalisation, defaults, and environment overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from router_service.config.settings import Settings, normalise_database_url
from router_service.domain.retry import RetryPolicy


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting leaks in from the developer's or CI's environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@db.example:5432/router?sslmode=require",
        "postgres://user:pw@db.example:5432/router?sslmode=require",
        "postgresql+psycopg2://user:pw@db.example:5432/router?sslmode=require",
        "postgresql+asyncpg://user:pw@db.example:5432/router?sslmode=require",
    ],
)
def test_postgres_spellings_become_asyncpg_with_the_rest_unchanged(url: str) -> None:
    assert normalise_database_url(url) == (
        "postgresql+asyncpg://user:pw@db.example:5432/router?sslmode=require"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////abs/path/x.db", "sqlite+aiosqlite:////abs/path/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_sqlite_urls_become_aiosqlite(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_mysql_url_is_rejected_naming_the_scheme() -> None:
    with pytest.raises(ValueError, match=r"not mysql://"):
        normalise_database_url("mysql://user:pw@host/db")


@pytest.mark.parametrize("url", ["", "just-a-path.db", "postgresql:/missing-slash"])
def test_non_url_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL is not a URL"):
        normalise_database_url(url)


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert settings.request_deadline_ms == 3000
    assert settings.agent_timeout_ms == 1000
    assert settings.retry_max_attempts == 3
    assert settings.retry_base_ms == 50
    assert settings.retry_cap_ms == 500
    assert settings.max_replays == 5
    assert settings.fanout_concurrency == 16
    assert settings.global_concurrency == 256
    assert settings.max_body_bytes == 262144
    assert settings.max_json_depth == 32
    assert settings.api_key is None
    assert settings.api_keys is None


def test_default_database_is_sqlite_with_the_async_driver(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///./var/router.db"
    assert settings.is_sqlite


def test_default_retry_policy_matches_the_retry_settings(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).retry_policy == RetryPolicy(3, 0.050, 0.500)


def test_environment_overrides_a_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RETRY_MAX_ATTEMPTS", "5")
    settings = Settings(_env_file=None)
    assert settings.retry_max_attempts == 5
    assert settings.retry_policy.max_attempts == 5


def test_database_url_from_environment_is_normalised(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgres://u:p@h:5432/d")
    settings = Settings(_env_file=None)
    assert settings.database_url == "postgresql+asyncpg://u:p@h:5432/d"
    assert not settings.is_sqlite


def test_mysql_database_url_from_environment_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "mysql://u:p@h/d")
    with pytest.raises(ValidationError, match="postgresql:// or sqlite://"):
        Settings(_env_file=None)


def test_api_key_from_environment_is_a_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("API_KEY", "env-secret-value")
    settings = Settings(_env_file=None)
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "env-secret-value"
    assert "env-secret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("RETRY_MAX_ATTEMPTS", "0"), ("MAX_JSON_DEPTH", "1"), ("REQUEST_DEADLINE_MS", "abc")],
)
def test_out_of_range_setting_from_environment_is_refused(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)


def test_string_and_array_limits_are_off_by_default_and_the_body_limit_bounds_them() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.max_string_chars is None
    assert settings.max_array_items is None
    assert Settings(_env_file=None, max_string_chars=1000).max_string_chars == 1000  # type: ignore[call-arg]
