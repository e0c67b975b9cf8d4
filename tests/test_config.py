"""Settings: defaults, the config file, the environment, and command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.client.profiles import editing
from cumulo.config import load_client_settings, load_settings
from cumulo.errors import Invalid


def test_defaults_bind_loopback_under_dot_cumulo(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.host == "127.0.0.1" and settings.port == 8080
    assert settings.home == tmp_path / ".cumulo"
    assert settings.database_url == f"sqlite:///{tmp_path / '.cumulo' / 'cumulo.db'}"
    assert settings.storage_url == str(tmp_path / ".cumulo" / "storage")


def test_file_then_environment_then_overrides(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cumulo.toml").write_text(
        'port = 9000\nstorage_url = "s3://lake/prefix"\n[s3]\nendpoint_url = "http://minio:9000"\n'
    )
    from_file = load_settings({})
    assert from_file.port == 9000 and from_file.storage_url == "s3://lake/prefix"
    assert from_file.s3.endpoint_url == "http://minio:9000"
    from_env = load_settings({"CUMULO_PORT": "9100", "CUMULO_S3_REGION": "eu-west-1"})
    assert from_env.port == 9100 and from_env.s3.region == "eu-west-1"
    assert from_env.s3.endpoint_url == "http://minio:9000"
    overridden = load_settings({"CUMULO_PORT": "9100"}, overrides={"port": 9200, "host": None})
    assert overridden.port == 9200 and overridden.host == "127.0.0.1"


def test_serving_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = load_settings({})
    assert defaults.serving_preload is True and defaults.ray_serve_port == 8000
    off = load_settings({"CUMULO_SERVING_PRELOAD": "0", "CUMULO_RAY_SERVE_PORT": "8100"})
    assert off.serving_preload is False and off.ray_serve_port == 8100
    (tmp_path / "cumulo.toml").write_text("serving_preload = false\n")
    assert load_settings({}).serving_preload is False


def test_trusted_proxies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).trusted_proxies == ()
    assert load_settings({"CUMULO_TRUSTED_PROXIES": " 10.0.0.5, 10.1.0.0/16 ,"}
                         ).trusted_proxies == ("10.0.0.5", "10.1.0.0/16")
    (tmp_path / "cumulo.toml").write_text('trusted_proxies = ["192.168.4.2", "fd00::/8"]\n')
    assert load_settings({}).trusted_proxies == ("192.168.4.2", "fd00::/8")


def test_stream_subscriptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).stream_subscriptions == 256
    assert load_settings({"CUMULO_STREAM_SUBSCRIPTIONS": "8"}).stream_subscriptions == 8


def test_named_config_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('host = "0.0.0.0"\n')
    settings = load_settings({"CUMULO_CONFIG": str(path)})
    assert settings.host == "0.0.0.0" and settings.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(("env", "content", "match"), [
    ({"CUMULO_PORT": "x"}, None, "whole number"),
    ({"CUMULO_PORT": "70000"}, None, "out of range"),
    ({}, "prot = 1\n", "unknown settings \\['prot'\\]"),
    ({}, "port = \n", "not valid TOML"),
    ({"CUMULO_CONFIG": "/nonexistent.toml"}, None, "not a file"),
    ({"CUMULO_SERVING_PRELOAD": "maybe"}, None, "serving_preload: 'maybe' is not true or false"),
    ({"CUMULO_RAY_SERVE_PORT": "eighty"}, None, "ray_serve_port must be a whole number"),
    ({"CUMULO_TRUSTED_PROXIES": "10.0.0.5,proxy.local"}, None,
     "trusted_proxies: 'proxy.local' is not an IP address or network"),
    ({"CUMULO_STREAM_SUBSCRIPTIONS": "many"}, None, "stream_subscriptions must be a whole"),
    ({}, "stream_subscriptions = 0\n", "stream_subscriptions must be at least 1"),
    ({"CUMULO_ANOMALY_WEBHOOK": "hooks.example.com/x"}, None,
     "anomaly_webhook 'hooks.example.com/x' is not an http:// or https:// URL"),
])
def test_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                      content: str | None, match: str) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "cumulo.toml").write_text(content)
    with pytest.raises(Invalid, match=match):
        load_settings(env)


def test_client_settings_precedence(tmp_path: Path) -> None:
    # The saved logins' own rules (profiles, CUMULO_PROFILE) are in tests/client/.
    creds = tmp_path / "creds.toml"
    env = {"CUMULO_CREDENTIALS": str(creds)}
    assert load_client_settings(env=env).url == "http://127.0.0.1:8080"
    assert load_client_settings(env=env).token is None
    with editing(creds) as logins:
        logins.login("http://saved:1", "saved-token", user="admin")
    assert creds.stat().st_mode & 0o777 == 0o600
    saved = load_client_settings(env=env)
    assert (saved.url, saved.token, saved.source) == ("http://saved:1", "saved-token",
                                                      f"profile 'saved:1' in {creds}")
    from_env = load_client_settings(env={**env, "CUMULO_TOKEN": "t", "CUMULO_URL": "http://e:2/"})
    assert (from_env.url, from_env.token, from_env.source) == ("http://e:2", "t", "CUMULO_TOKEN")
    explicit = load_client_settings("http://arg:3", "a", env={**env, "CUMULO_TOKEN": "t"})
    assert (explicit.url, explicit.token) == ("http://arg:3", "a")
