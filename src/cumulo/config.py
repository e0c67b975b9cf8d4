"""Settings: the only module that reads the environment.

Server settings come from, in rising order of precedence: built-in defaults, a ``cumulo.toml``
file (``./cumulo.toml``, or the file named by ``CUMULO_CONFIG``), then ``CUMULO_*`` variables.

Client settings (where the server is, and who you are) come from ``CUMULO_URL`` and
``CUMULO_TOKEN``, else from the credentials file that ``cumulo login`` and the first
``cumulo up`` write (``~/.config/cumulo/credentials.toml``, or ``CUMULO_CREDENTIALS``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from cumulo.errors import Invalid

__all__ = [
    "DEFAULT_PORT",
    "ClientSettings",
    "S3Settings",
    "Settings",
    "load_client_settings",
    "load_settings",
    "save_credentials",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible service when the storage URL is ``s3://``."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str = "us-east-1"


@dataclass(frozen=True)
class Settings:
    """Everything the control plane needs to start."""

    home: Path
    database_url: str
    storage_url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    admin_token: str | None = None
    log_level: str = "info"
    s3: S3Settings = field(default_factory=S3Settings)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ClientSettings:
    url: str
    token: str | None
    source: str  # where the token came from, for error messages


_ENV_KEYS = {
    "home": "CUMULO_HOME",
    "database_url": "CUMULO_DATABASE_URL",
    "storage_url": "CUMULO_STORAGE_URL",
    "host": "CUMULO_HOST",
    "port": "CUMULO_PORT",
    "admin_token": "CUMULO_ADMIN_TOKEN",
    "log_level": "CUMULO_LOG_LEVEL",
}
_S3_ENV_KEYS = {
    "endpoint_url": "CUMULO_S3_ENDPOINT_URL",
    "access_key_id": "CUMULO_S3_ACCESS_KEY_ID",
    "secret_access_key": "CUMULO_S3_SECRET_ACCESS_KEY",
    "region": "CUMULO_S3_REGION",
}


def _config_file(env: dict[str, str]) -> Path | None:
    named = env.get("CUMULO_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise Invalid(f"CUMULO_CONFIG names {path}, which is not a file")
        return path
    path = Path("cumulo.toml")
    return path if path.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"{path} is not valid TOML: {exc}") from exc


def load_settings(
    env: dict[str, str] | None = None, *, overrides: dict[str, Any] | None = None
) -> Settings:
    """Read server settings from the config file and the environment; ``overrides`` (from
    command-line options) win over both."""
    env = dict(os.environ) if env is None else env
    path = _config_file(env)
    doc = _read_toml(path) if path else {}
    known = {f.name for f in fields(Settings)}
    unknown = set(doc) - known
    if unknown:
        raise Invalid(
            f"{path} has unknown settings {sorted(unknown)}; known ones are {sorted(known)}"
        )
    values: dict[str, Any] = {k: v for k, v in doc.items() if k != "s3"}
    for name, var in _ENV_KEYS.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    s3_values: dict[str, Any] = dict(doc.get("s3", {}))
    for name, var in _S3_ENV_KEYS.items():
        if env.get(var):
            s3_values[name] = env[var]

    home = Path(values.pop("home", ".cumulo")).expanduser().resolve()
    try:
        port = int(values.pop("port", DEFAULT_PORT))
    except ValueError as exc:
        raise Invalid("port must be a whole number, e.g. CUMULO_PORT=8080") from exc
    if not 0 < port < 65536:
        raise Invalid(f"port {port} is out of range 1-65535")
    return Settings(
        home=home,
        database_url=values.pop("database_url", None) or f"sqlite:///{home / 'cumulo.db'}",
        storage_url=values.pop("storage_url", None) or str(home / "storage"),
        port=port,
        s3=S3Settings(**s3_values),
        **values,
    )


def credentials_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("CUMULO_CREDENTIALS"):
        return Path(env["CUMULO_CREDENTIALS"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "cumulo" / "credentials.toml"


def load_client_settings(
    url: str | None = None, token: str | None = None, env: dict[str, str] | None = None
) -> ClientSettings:
    """Find the server URL and token: arguments, then environment, then credentials file."""
    env = dict(os.environ) if env is None else env
    source = "argument" if token else ""
    url = url or env.get("CUMULO_URL")
    if not token and env.get("CUMULO_TOKEN"):
        token, source = env["CUMULO_TOKEN"], "CUMULO_TOKEN"
    path = credentials_path(env)
    if (not token or not url) and path.is_file():
        doc = _read_toml(path)
        url = url or doc.get("url")
        if not token and doc.get("token"):
            token, source = doc["token"], str(path)
    return ClientSettings(
        url=(url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/"),
        token=token,
        source=source,
    )


def save_credentials(url: str, token: str, env: dict[str, str] | None = None) -> Path:
    """Write the client credentials file, readable by its owner only."""
    path = credentials_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump({"url": url, "token": token}, f)
    os.replace(tmp, path)
    return path
