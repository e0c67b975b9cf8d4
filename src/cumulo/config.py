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

import ipaddress
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cumulo.errors import Invalid

__all__ = [
    "DEFAULT_PORT",
    "ClientSettings",
    "OidcSettings",
    "OwnHardware",
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
    per GB-hour; a g5.xlarge's A10G per GPU-hour; Kinesis Data Streams' provisioned mode per
    shard-hour and per million PUT payload units), so a figure reads as "what this work would
    cost on a public cloud". Set ``[prices]`` in cumulo.toml to your own.
    """

    vcpu_hour: float = 0.04048
    gb_hour: float = 0.004445
    gpu_hour: float = 1.006
    shard_hour: float = 0.015  # a stream's shard, open for an hour
    million_put_units: float = 0.014  # a million PUT payload units (25 KiB of a record each)
    # S3 Standard's first 50 TB per GB-month, its PUT/COPY/POST/LIST and GET requests per
    # thousand, and Athena's per TB scanned (docs/costs.md gives the sources and dates).
    storage_gb_month: float = 0.023
    thousand_put_requests: float = 0.005
    thousand_get_requests: float = 0.0004
    tb_scanned: float = 5.0


@dataclass(frozen=True)
class OwnHardware:
    """The own-hardware price sheet's machine (``[hardware]``, ``CUMULO_HARDWARE_*``): what it
    cost, how long it lasts, what it draws, and what it holds. Its cost per hour (the price
    spread over its life, plus power) is shared among its vCPUs, memory and GPUs in the cloud
    sheet's proportions (cumulo.metering.sheets; docs/costs.md)."""

    price: float = 6000.0  # US dollars, bought
    life_years: float = 4.0
    watts: float = 350.0  # average draw
    kwh_price: float = 0.15  # US dollars a kWh
    vcpus: float = 32.0
    memory_gb: float = 128.0
    gpus: float = 0.0
    disk_price_per_tb: float = 60.0  # its disks' price per TB, spread over the same life


@dataclass(frozen=True)
class OidcSettings:
    """Single sign-on with an OpenID Connect provider (``[oidc]``, ``CUMULO_OIDC_*``; used by
    :mod:`cumulo.access.oidc`). Set when ``issuer`` is."""

    issuer: str  # e.g. https://login.example.com/realms/staff, as the provider names itself
    client_id: str
    client_secret: str = field(repr=False)
    name: str = "single sign-on"  # on the sign-in page's button: "Sign in with <name>"
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    groups_claim: str = "groups"  # the claim that lists the user's groups at the provider
    # A provider group -> the Cumulo groups its members are put in; other groups are ignored.
    group_map: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_role: str | None = None  # a built-in role given to a user SSO creates
    # Whether the issuer (and its endpoints) may be plain http: a local or test provider only.
    allow_http: bool = False


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
    # The own-hardware sheet's machine, and the sheet that prices budgets and is shown first
    # ("cloud" or "own"; cumulo costs shows both side by side).
    hardware: OwnHardware = field(default_factory=OwnHardware)
    cost_sheet: str = "cloud"
    # Seconds between samples of what storage holds (byte-hours for cumulo costs), and between
    # checks of budgets and cost anomalies.
    storage_sample_seconds: float = 900.0
    budget_check_seconds: float = 60.0
    # How long an alert's webhook has to answer, and how many times it is tried.
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = 5
    # Where cost anomalies (a day far above the trailing mean) are POSTed too; none: only the
    # console's banner, cumulo status and cumulo alerts show them.
    anomaly_webhook: str = ""
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
    # Single sign-on (``[oidc]``): None unless an issuer is set.
    oidc: OidcSettings | None = None
    # Reverse proxies in front of the server (addresses or networks, "10.0.0.5",
    # "10.1.0.0/16"): a request from one of them is taken to come from the address its
    # X-Forwarded-For names, for source-address conditions, sign-in rate limits and the audit
    # log. Empty (the default): X-Forwarded-For is ignored, from everyone.
    trusted_proxies: tuple[str, ...] = ()
    # The S3 API's domain for virtual-host-style addressing (``BUCKET.s3.example.com``); None:
    # path-style only (``/BUCKET/KEY`` on the server's own URL).
    s3_domain: str | None = None
    # Push subscriptions to streams' shards (SubscribeToShard, client.streams.subscribe) open
    # at once: each holds a connection and, while records flow, a share of a few read threads.
    stream_subscriptions: int = 256
    # Bytes of records waiting to be written into one shard past which puts of that shard are
    # refused for a moment (Kinesis's ProvisionedThroughputExceededException, which its
    # clients retry), so writers faster than the disk slow down instead of filling memory.
    stream_shard_backlog: int = 64 * 2**20
    # Where streams keep their records: empty (the default) for the embedded log under
    # <home>/streams, or nats://HOST:4222 (tls://) for NATS JetStream, shared by control planes.
    streams_url: str = ""
    # Seconds after its newest record that a sealed segment of the embedded log moves to the
    # storage backend (under streams/), read back through a local cache; None: never.
    stream_archive_seconds: float | None = None
    # Seconds between a stream's usage records (shard-hours, PUT payload units) for ``cumulo
    # costs``; PUT units counted since the last record are lost if the server is killed.
    stream_meter_seconds: float = 300.0
    # Prometheus metrics (/metrics, cumulo.metrics): on by default; off, requests are not
    # counted or timed and /metrics answers 404 (docs/operations.md).
    metrics: bool = True
    # Metering (cumulo.metering): on by default; off, no usage records are written (jobs,
    # endpoints, builds, streams, storage samples, SQL), and budgets and anomalies are neither
    # checked nor enforced: costs show nothing for that time (docs/costs.md).
    metering: bool = True
    # An OpenTelemetry collector's OTLP/HTTP address (http://HOST:4318): each request becomes a
    # span, sent there. Empty (the default): no traces, and OpenTelemetry is never imported.
    otel_endpoint: str = ""

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_urls(self) -> list[str]:
        """Where jobs and replicas reach the control planes: ``public_url`` (a load balancer's
        URL, or several control planes' separated by commas, tried in turn), else this one."""
        found = [u.strip().rstrip("/") for u in (self.public_url or "").split(",") if u.strip()]
        return found or [self.url]


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
    "trusted_proxies": "CUMULO_TRUSTED_PROXIES",
    "s3_domain": "CUMULO_S3_DOMAIN",
    "stream_subscriptions": "CUMULO_STREAM_SUBSCRIPTIONS",
    "stream_shard_backlog": "CUMULO_STREAM_SHARD_BACKLOG",
    "streams_url": "CUMULO_STREAMS_URL",
    "stream_archive_seconds": "CUMULO_STREAM_ARCHIVE_SECONDS",
    "stream_meter_seconds": "CUMULO_STREAM_METER_SECONDS",
    "cost_sheet": "CUMULO_COST_SHEET",
    "storage_sample_seconds": "CUMULO_STORAGE_SAMPLE_SECONDS",
    "budget_check_seconds": "CUMULO_BUDGET_CHECK_SECONDS",
    "webhook_timeout_seconds": "CUMULO_WEBHOOK_TIMEOUT_SECONDS",
    "anomaly_webhook": "CUMULO_ANOMALY_WEBHOOK",
    "webhook_attempts": "CUMULO_WEBHOOK_ATTEMPTS",
    "metrics": "CUMULO_METRICS",
    "metering": "CUMULO_METERING",
    "otel_endpoint": "CUMULO_OTEL_ENDPOINT",
}
_S3_ENV_KEYS = {
    "endpoint_url": "CUMULO_S3_ENDPOINT_URL",
    "access_key_id": "CUMULO_S3_ACCESS_KEY_ID",
    "secret_access_key": "CUMULO_S3_SECRET_ACCESS_KEY",
    "region": "CUMULO_S3_REGION",
}
_OIDC_ENV_KEYS = {
    "issuer": "CUMULO_OIDC_ISSUER",
    "client_id": "CUMULO_OIDC_CLIENT_ID",
    "client_secret": "CUMULO_OIDC_CLIENT_SECRET",
    "name": "CUMULO_OIDC_NAME",
    "scopes": "CUMULO_OIDC_SCOPES",
    "groups_claim": "CUMULO_OIDC_GROUPS_CLAIM",
    "group_map": "CUMULO_OIDC_GROUP_MAP",
    "default_role": "CUMULO_OIDC_DEFAULT_ROLE",
    "allow_http": "CUMULO_OIDC_ALLOW_HTTP",
}
_PRICE_ENV_KEYS = {
    "vcpu_hour": "CUMULO_PRICE_VCPU_HOUR",
    "gb_hour": "CUMULO_PRICE_GB_HOUR",
    "gpu_hour": "CUMULO_PRICE_GPU_HOUR",
    "shard_hour": "CUMULO_PRICE_SHARD_HOUR",
    "million_put_units": "CUMULO_PRICE_MILLION_PUT_UNITS",
    "storage_gb_month": "CUMULO_PRICE_STORAGE_GB_MONTH",
    "thousand_put_requests": "CUMULO_PRICE_THOUSAND_PUT_REQUESTS",
    "thousand_get_requests": "CUMULO_PRICE_THOUSAND_GET_REQUESTS",
    "tb_scanned": "CUMULO_PRICE_TB_SCANNED",
}
_HARDWARE_ENV_KEYS = {name: f"CUMULO_HARDWARE_{name.upper()}" for name in (
    "price", "life_years", "watts", "kwh_price", "vcpus", "memory_gb", "gpus",
    "disk_price_per_tb")}


def _proxies(raw: Any) -> tuple[str, ...]:
    """``"10.0.0.5, 10.1.0.0/16"`` (or a TOML list) -> each checked as an address or network."""
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    proxies = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise Invalid(f"trusted_proxies: {text!r} is not an IP address or network (like "
                          "10.0.0.5 or 10.1.0.0/16)") from exc
        proxies.append(text)
    return tuple(proxies)


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


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise Invalid(f"setting {name}: {value!r} is not true or false")
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def _text(name: str, value: Any, *, longest: int = 1024) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"setting {name} must be a non-empty string, got {value!r}")
    if len(value) > longest:
        raise Invalid(f"setting {name} is over {longest} characters")
    return value.strip()


def _group_map(value: Any) -> dict[str, tuple[str, ...]]:
    """``{"ml-team": "data-science"}`` or ``{"ml-team": ["data-science", "analysts"]}``: a
    TOML table, or JSON in CUMULO_OIDC_GROUP_MAP."""
    example = 'e.g. {"ml-team": "data-science"} (JSON in CUMULO_OIDC_GROUP_MAP)'
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Invalid(f"setting oidc.group_map is not JSON ({exc}): {example}") from exc
    if not isinstance(value, dict):
        raise Invalid(f"setting oidc.group_map maps provider groups to Cumulo groups: {example}")
    mapped: dict[str, tuple[str, ...]] = {}
    for outside, inside in value.items():
        names = [inside] if isinstance(inside, str) else inside
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n
                                                           for n in names)):
            raise Invalid(f"setting oidc.group_map: {outside!r} must map to a Cumulo group "
                          f"name or a list of them, not {inside!r}: {example}")
        mapped[str(outside)] = tuple(names)
    return mapped


def _oidc(values: dict[str, Any]) -> OidcSettings | None:
    """The ``[oidc]`` settings, checked for shape (the roles and group names are checked
    against the directory at start: ``cumulo.access.oidc.check_settings``)."""
    if not values:
        return None
    missing = [k for k in ("issuer", "client_id", "client_secret") if not values.get(k)]
    if missing:
        raise Invalid("single sign-on needs oidc.issuer, oidc.client_id and "
                      f"oidc.client_secret; missing: {', '.join(missing)} (in [oidc] of the "
                      "settings file, or CUMULO_OIDC_ISSUER, CUMULO_OIDC_CLIENT_ID, "
                      "CUMULO_OIDC_CLIENT_SECRET)")
    allow_http = _flag("oidc.allow_http", values.get("allow_http", False))
    issuer = _text("oidc.issuer", values["issuer"])
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid(f"setting oidc.issuer {issuer!r} is not a URL like "
                      "'https://login.example.com'")
    if parts.scheme == "http" and not allow_http:
        raise Invalid(f"setting oidc.issuer {issuer!r} must be https: tokens and secrets "
                      "would cross the network in the clear (oidc.allow_http = true allows "
                      "http, for a local test provider only)")
    if parts.query or parts.fragment:
        raise Invalid(f"setting oidc.issuer {issuer!r} must have no query or fragment")
    scopes = values.get("scopes", OidcSettings.scopes)
    scopes = tuple(scopes.replace(",", " ").split() if isinstance(scopes, str) else scopes)
    if "openid" not in scopes or not all(isinstance(s, str) for s in scopes):
        raise Invalid(f"setting oidc.scopes {' '.join(map(str, scopes))!r} must include "
                      "'openid', e.g. 'openid email profile groups'")
    role = values.get("default_role") or None
    return OidcSettings(
        issuer=issuer,
        client_id=_text("oidc.client_id", values["client_id"]),
        client_secret=_text("oidc.client_secret", values["client_secret"]),
        name=_text("oidc.name", values.get("name", OidcSettings.name), longest=64),
        scopes=scopes,
        groups_claim=_text("oidc.groups_claim",
                           values.get("groups_claim", OidcSettings.groups_claim), longest=256),
        group_map=_group_map(values.get("group_map", {})),
        default_role=None if role is None else _text("oidc.default_role", role, longest=64),
        allow_http=allow_http,
    )


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
    values: dict[str, Any] = {k: v for k, v in doc.items()
                              if k not in ("s3", "prices", "oidc", "hardware")}
    for name, var in _ENV_KEYS.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    s3_values = _section(doc, "s3", env, _S3_ENV_KEYS, path)
    oidc = _oidc(_section(doc, "oidc", env, _OIDC_ENV_KEYS, path))
    prices = {k: _number(f"prices.{k}", v)
              for k, v in _section(doc, "prices", env, _PRICE_ENV_KEYS, path).items()}
    hardware = {k: _number(f"hardware.{k}", v)
                for k, v in _section(doc, "hardware", env, _HARDWARE_ENV_KEYS, path).items()}
    if hardware.get("life_years", 1.0) <= 0:
        raise Invalid("hardware.life_years must be more than 0, e.g. 4")
    for name in ("storage_sample_seconds", "budget_check_seconds", "webhook_timeout_seconds"):
        if name in values:
            values[name] = _number(name, values[name])
            if values[name] <= 0:
                raise Invalid(f"{name} must be more than 0")
    if "webhook_attempts" in values:
        try:
            values["webhook_attempts"] = int(values["webhook_attempts"])
        except ValueError as exc:
            raise Invalid("webhook_attempts must be a whole number, e.g. 5") from exc
        if values["webhook_attempts"] < 1:
            raise Invalid("webhook_attempts must be at least 1")
    if "cost_sheet" in values and values["cost_sheet"] not in ("cloud", "own"):
        raise Invalid(f"cost_sheet {values['cost_sheet']!r} is not cloud or own")
    if "job_grace_seconds" in values:
        values["job_grace_seconds"] = _number("job_grace_seconds", values["job_grace_seconds"])
    if "stream_meter_seconds" in values:
        values["stream_meter_seconds"] = _number("stream_meter_seconds",
                                                 values["stream_meter_seconds"])
        if values["stream_meter_seconds"] <= 0:
            raise Invalid("stream_meter_seconds must be more than 0, e.g. 300")
    if "preload" in values:
        from cumulo.forkserver.preload import parse_preload

        preload = values["preload"]
        try:
            parse_preload(preload if isinstance(preload, list) else str(preload))
        except ValueError as exc:
            raise Invalid(f"setting preload: {exc}") from exc
        values["preload"] = ",".join(preload) if isinstance(preload, list) else str(preload)

    for name in ("serving_preload", "allow_internal_urls", "metrics", "metering"):
        if name not in values:
            continue
        flag = values[name]
        if isinstance(flag, str):
            if flag.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise Invalid(f"setting {name}: {flag!r} is not true or false")
            flag = flag.lower() in ("1", "true", "yes", "on")
        values[name] = bool(flag)

    if "trusted_proxies" in values:
        values["trusted_proxies"] = _proxies(values["trusted_proxies"])

    if "ray_serve_port" in values:
        try:
            values["ray_serve_port"] = int(values["ray_serve_port"])
        except ValueError as exc:
            raise Invalid("ray_serve_port must be a whole number, e.g. 8000") from exc

    if "stream_subscriptions" in values:
        try:
            values["stream_subscriptions"] = int(values["stream_subscriptions"])
        except ValueError as exc:
            raise Invalid("stream_subscriptions must be a whole number, e.g. 256") from exc
        if values["stream_subscriptions"] < 1:
            raise Invalid("stream_subscriptions must be at least 1")

    if "stream_shard_backlog" in values:
        try:
            values["stream_shard_backlog"] = int(values["stream_shard_backlog"])
        except ValueError as exc:
            raise Invalid("stream_shard_backlog must be a whole number of bytes, e.g. "
                          "67108864") from exc
        if values["stream_shard_backlog"] < 1:
            raise Invalid("stream_shard_backlog must be at least 1 byte")

    if "stream_archive_seconds" in values:
        values["stream_archive_seconds"] = _number("stream_archive_seconds",
                                                   values["stream_archive_seconds"])

    if "streams_url" in values:
        values["streams_url"] = str(values["streams_url"]).strip()
        if values["streams_url"] and not values["streams_url"].startswith(("nats://",
                                                                           "tls://")):
            raise Invalid(f"streams_url {values['streams_url']!r} is not nats://HOST:PORT "
                          "(or tls://); leave it empty for the embedded log")

    if "anomaly_webhook" in values:
        url = values["anomaly_webhook"] = str(values["anomaly_webhook"]).strip()
        if url and (not url.startswith(("http://", "https://")) or " " in url):
            raise Invalid(f"anomaly_webhook {url!r} is not an http:// or https:// URL; leave "
                          "it empty for none")

    if "otel_endpoint" in values:
        values["otel_endpoint"] = str(values["otel_endpoint"]).strip().rstrip("/")
        if values["otel_endpoint"] and not values["otel_endpoint"].startswith(("http://",
                                                                               "https://")):
            raise Invalid(f"otel_endpoint {values['otel_endpoint']!r} is not an OTLP/HTTP "
                          "address like http://HOST:4318; leave it empty for no traces")

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
        hardware=OwnHardware(**hardware),
        oidc=oidc,
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
