"""Settings: the only module that reads the environment.

Server settings come from, in rising order of precedence: built-in defaults, a ``cumulo.toml``
file (``./cumulo.toml``, or the file named by ``CUMULO_CONFIG``), then ``CUMULO_*`` variables.

Client settings (where the server is, and who you are) come from ``CUMULO_URL`` and
``CUMULO_TOKEN``, else from a saved login: a profile of the credentials file that ``cumulo
login`` and the first ``cumulo up`` write (``~/.config/cumulo/credentials.toml``, or
``CUMULO_CREDENTIALS``), the one ``CUMULO_PROFILE`` names or the current one
(``cumulo.client.profiles``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cumulo.errors import Invalid

__all__ = [
    "DEFAULT_PORT",
    "ClientSettings",
    "Prices",
    "S3Settings",
    "Settings",
    "child_env",
    "client_password",
    "load_client_settings",
    "load_settings",
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
class Prices:
    """What a unit of use costs, in US dollars: the price sheet behind ``cumulo costs``.

    The defaults are AWS's on-demand list prices in us-east-1 (Fargate's per vCPU-hour and
    per GB-hour; a g5.xlarge's A10G per GPU-hour), so a figure reads as "what this work would
    cost on a public cloud". Set ``[prices]`` in cumulo.toml to your own.
    """

    vcpu_hour: float = 0.04048
    gb_hour: float = 0.004445
    gpu_hour: float = 1.006


@dataclass(frozen=True)
class Settings:
    """Everything the control plane needs to start."""

    home: Path
    database_url: str
    storage_url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    admin_token: str | None = None
    # The address jobs use to reach the control plane, when it differs from host:port
    # (a Ray cluster on other machines, say).
    public_url: str | None = None
    log_level: str = "info"
    s3: S3Settings = field(default_factory=S3Settings)
    prices: Prices = field(default_factory=Prices)
    # How long a cancelled or timed-out job has between SIGTERM and SIGKILL.
    job_grace_seconds: float = 10.0
    # What local clusters' Python jobs start with already imported (cumulo.forkserver):
    # "auto" (the ML stack), "none", or module names separated by commas ("auto,torch").
    preload: str = "auto"
    # Endpoint replicas start as forks of a process that imported the serving stack once
    # (cumulo.forkserver): well under a second instead of several.
    serving_preload: bool = True
    # The HTTP port Ray Serve listens on, on Ray clusters where Cumulo starts it.
    ray_serve_port: int = 8000
    # Another build of the web console to serve (the default is the one in the package).
    console_dir: str | None = None
    # Whether URL loads may fetch from loopback, private, link-local and other internal
    # addresses (cumulo.netguard), for every caller: off, so that a load cannot read the
    # machine's or the network's internal services (MLflow's port, a cloud's metadata).
    allow_internal_urls: bool = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ClientSettings:
    url: str
    token: str | None
    source: str  # where the token came from, for error messages
    profile: str | None = None  # the saved login whose token this is


_ENV_KEYS = {
    "home": "CUMULO_HOME",
    "database_url": "CUMULO_DATABASE_URL",
    "storage_url": "CUMULO_STORAGE_URL",
    "host": "CUMULO_HOST",
    "port": "CUMULO_PORT",
    "admin_token": "CUMULO_ADMIN_TOKEN",
    "public_url": "CUMULO_PUBLIC_URL",
    "log_level": "CUMULO_LOG_LEVEL",
    "job_grace_seconds": "CUMULO_JOB_GRACE_SECONDS",
    "preload": "CUMULO_PRELOAD",
    "serving_preload": "CUMULO_SERVING_PRELOAD",
    "ray_serve_port": "CUMULO_RAY_SERVE_PORT",
    "console_dir": "CUMULO_CONSOLE_DIR",
    "allow_internal_urls": "CUMULO_ALLOW_INTERNAL_URLS",
}
_S3_ENV_KEYS = {
    "endpoint_url": "CUMULO_S3_ENDPOINT_URL",
    "access_key_id": "CUMULO_S3_ACCESS_KEY_ID",
    "secret_access_key": "CUMULO_S3_SECRET_ACCESS_KEY",
    "region": "CUMULO_S3_REGION",
}
_PRICE_ENV_KEYS = {
    "vcpu_hour": "CUMULO_PRICE_VCPU_HOUR",
    "gb_hour": "CUMULO_PRICE_GB_HOUR",
    "gpu_hour": "CUMULO_PRICE_GPU_HOUR",
}


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"setting {name} must be a number, got {value!r}") from exc
    if number < 0:
        raise Invalid(f"setting {name} must not be negative, got {value!r}")
    return number


def _section(doc: dict[str, Any], name: str, env: dict[str, str], keys: dict[str, str],
             path: Path | None) -> dict[str, Any]:
    """One ``[name]`` table of the config file, overlaid with its environment variables."""
    values: dict[str, Any] = dict(doc.get(name, {}))
    unknown = set(values) - set(keys)
    if unknown:
        raise Invalid(f"{path} has unknown settings {sorted(unknown)} in [{name}]; known ones "
                      f"are {sorted(keys)}")
    for key, var in keys.items():
        if env.get(var):
            values[key] = env[var]
    return values


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
    values: dict[str, Any] = {k: v for k, v in doc.items() if k not in ("s3", "prices")}
    for name, var in _ENV_KEYS.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    s3_values = _section(doc, "s3", env, _S3_ENV_KEYS, path)
    prices = {k: _number(f"prices.{k}", v)
              for k, v in _section(doc, "prices", env, _PRICE_ENV_KEYS, path).items()}
    if "job_grace_seconds" in values:
        values["job_grace_seconds"] = _number("job_grace_seconds", values["job_grace_seconds"])
    if "preload" in values:
        from cumulo.forkserver.preload import parse_preload

        preload = values["preload"]
        try:
            parse_preload(preload if isinstance(preload, list) else str(preload))
        except ValueError as exc:
            raise Invalid(f"setting preload: {exc}") from exc
        values["preload"] = ",".join(preload) if isinstance(preload, list) else str(preload)

    for name in ("serving_preload", "allow_internal_urls"):
        if name not in values:
            continue
        flag = values[name]
        if isinstance(flag, str):
            if flag.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise Invalid(f"setting {name}: {flag!r} is not true or false")
            flag = flag.lower() in ("1", "true", "yes", "on")
        values[name] = bool(flag)

    if "ray_serve_port" in values:
        try:
            values["ray_serve_port"] = int(values["ray_serve_port"])
        except ValueError as exc:
            raise Invalid("ray_serve_port must be a whole number, e.g. 8000") from exc

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
        prices=Prices(**prices),
        **values,
    )


def credentials_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("CUMULO_CREDENTIALS"):
        return Path(env["CUMULO_CREDENTIALS"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "cumulo" / "credentials.toml"


def load_client_settings(
    url: str | None = None, token: str | None = None, env: dict[str, str] | None = None, *,
    profile: str | None = None,
) -> ClientSettings:
    """Find the server URL and token: arguments, then ``CUMULO_URL`` and ``CUMULO_TOKEN``, then
    a saved login: the profile named by ``profile`` or ``CUMULO_PROFILE``, else the current
    one for that URL, else one saved for it, else (no URL given) the current one.

    A ``profile`` argument (``--profile``) wins over ``CUMULO_URL`` and ``CUMULO_TOKEN``, as an
    option on the command line does; ``CUMULO_PROFILE`` does not. A saved token is only ever
    sent to the server it was saved for.
    """
    from cumulo.client.profiles import read_logins, same_server

    env = dict(os.environ) if env is None else env
    source = "argument" if token else ""
    if profile is None:
        url = url or env.get("CUMULO_URL")
        if not token and env.get("CUMULO_TOKEN"):
            token, source = env["CUMULO_TOKEN"], "CUMULO_TOKEN"
        profile = env.get("CUMULO_PROFILE") or None
    used = None
    if not (url and token):
        path = credentials_path(env)
        saved = read_logins(path).pick(profile, url)
        if saved is not None and url and not same_server(url, saved.url):
            raise Invalid(f"profile {saved.name!r} is a login to {saved.url}, not to {url}; "
                          "drop --url or CUMULO_URL, or pick that server's profile "
                          "('cumulo profiles ls')")
        if saved is not None:
            url = url or saved.url
            if not token:
                token, used = saved.token, saved.name
                source = f"profile {saved.name!r} in {path}"
    return ClientSettings(
        url=(url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/"),
        token=token,
        source=source,
        profile=used,
    )


# What a process Cumulo starts never inherits from the control plane: its settings (CUMULO_*),
# MLflow's (a job or replica gets its own), and an interactive start-up file.
_NOT_INHERITED = ("CUMULO_", "MLFLOW_", "PYTHONSTARTUP")


def child_env(extra: dict[str, str] | None = None, *, mlflow: bool = False) -> dict[str, str]:
    """The environment of a process the control plane starts (a job, a replica, a fork
    server, MLflow's server): this process's, less its own settings and, unless ``mlflow``
    (for MLflow's own server), MLflow's; output unbuffered and MLflow's usage telemetry off
    (it would send each call to a third party), then ``extra``."""
    dropped = tuple(p for p in _NOT_INHERITED if mlflow is False or p != "MLFLOW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.update(extra or {})
    return env


def client_password(env: dict[str, str] | None = None) -> str | None:
    """What 'cumulo login --user' signs in with instead of asking: ``CUMULO_PASSWORD``."""
    env = dict(os.environ) if env is None else env
    return env.get("CUMULO_PASSWORD") or None
