"""The deployment files in deploy/ hold together: what can be checked without running them.

No Docker engine runs where the tests run, and the Docker CLI here has no compose plugin, so
the compose file is checked as YAML against itself and against nginx.conf and the Dockerfile:
every service it names is defined, both control planes have the same database, storage and S3
settings (which Cumulo's own settings loader accepts) and call back through the load
balancer, whose upstream names both. ``docker compose config`` runs where the plugin exists
(skipped here, saying so). There is no Helm chart, and no ``helm`` here.

The systemd unit is read with configparser (``ExecStart`` runs ``cumulo up``, settings from an
``EnvironmentFile``), and ``systemd-analyze verify`` checks it where that command exists. The
environment file's example names only settings docs/configuration.md lists, and loads.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cumulo.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
NGINX = ROOT / "deploy" / "compose" / "nginx.conf"
UNIT = ROOT / "deploy" / "systemd" / "cumulo.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "cumulo.env.example"
SHARED = ("CUMULO_DATABASE_URL", "CUMULO_STORAGE_URL", "CUMULO_S3_ENDPOINT_URL",
          "CUMULO_S3_ACCESS_KEY_ID", "CUMULO_S3_SECRET_ACCESS_KEY", "CUMULO_S3_REGION",
          "CUMULO_PUBLIC_URL")
TOKEN = "cml_deploy-test-token-0123456789abcdef"


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _control_planes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run Cumulo: those with a database URL of Cumulo's."""
    return {name: s for name, s in doc["services"].items()
            if "CUMULO_DATABASE_URL" in _env(s)}


def _interpolated(value: str) -> str:
    """A value with compose's ``${VAR:?message}`` filled in, as `docker compose` would."""
    return re.sub(r"\$\{CUMULO_ADMIN_TOKEN[^}]*\}", TOKEN, value)


def _nginx() -> str:
    return re.sub(r"#[^\n]*", "", NGINX.read_text())


def _upstreams(conf: str) -> dict[str, list[tuple[str, int]]]:
    found = {}
    for name, body in re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf):
        found[name] = [(host, int(port)) for host, port in
                       re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.MULTILINE)]
    return found


def _depends_on(service: dict[str, Any]) -> list[str]:
    deps = service.get("depends_on") or []
    return list(deps) if isinstance(deps, dict | list) else []


def test_every_service_named_is_defined() -> None:
    doc = _compose()
    services = doc["services"]
    volumes = set(doc.get("volumes") or {})
    networks = {"default", *(doc.get("networks") or {})}
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: no image and no build"
        for dep in _depends_on(service):
            assert dep in services, f"{name} depends on {dep!r}, which is not a service"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}: missing"
            else:
                assert source in volumes, f"{name} mounts volume {source!r}: not declared"
        for network in service.get("networks") or []:
            assert network in networks, f"{name} joins network {network!r}: not declared"
    assert {"postgres", "minio", "lb"} <= set(services)


def test_the_image_is_built_from_the_dockerfile_here() -> None:
    doc = _compose()
    for name, service in _control_planes(doc).items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name} builds from {context}, not the repository"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        text = dockerfile.read_text()
        assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
        assert re.search(r"^RUN pip install .*\.\[", text, re.MULTILINE)  # the repo, with extras
        assert 'CMD ["cumulo", "up"]' in text
        # What the image copies exists in the repository.
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
            for path in source.split():
                assert (ROOT / path).exists(), f"the Dockerfile copies {path}: missing"


def test_two_control_planes_share_database_and_storage_and_call_back_through_the_lb(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _compose()
    planes = _control_planes(doc)
    assert len(planes) == 2, sorted(planes)
    envs = {name: _env(s) for name, s in planes.items()}
    (a, env_a), (b, env_b) = envs.items()
    for key in SHARED:
        assert env_a.get(key) and env_a.get(key) == env_b.get(key), f"{key} differs: {a}, {b}"
    # Each its own home: a volume of its own at the home's folder.
    homes = {name: tuple(s.get("volumes") or ()) for name, s in planes.items()}
    assert homes[a] and homes[b] and set(homes[a]).isdisjoint(homes[b])
    # CUMULO_PUBLIC_URL is the load balancer's, at the port nginx listens on.
    public = urlsplit(env_a["CUMULO_PUBLIC_URL"])
    lb = doc["services"].get(public.hostname or "")
    assert lb is not None, f"CUMULO_PUBLIC_URL names {public.hostname}, not a service"
    assert any("nginx.conf" in str(m) for m in lb.get("volumes") or []), "it is not nginx"
    listen = re.findall(r"^\s*listen\s+(\d+)\s*;", _nginx(), re.MULTILINE)
    assert listen and public.port == int(listen[0])
    # The database and the bucket are those the other services make.
    db = urlsplit(env_a["CUMULO_DATABASE_URL"])
    pg = _env(doc["services"][db.hostname or ""])
    assert (db.username, db.password, db.path.strip("/")) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    s3 = _env(doc["services"][urlsplit(env_a["CUMULO_S3_ENDPOINT_URL"]).hostname or ""])
    assert (env_a["CUMULO_S3_ACCESS_KEY_ID"], env_a["CUMULO_S3_SECRET_ACCESS_KEY"]) == (
        s3["MINIO_ROOT_USER"], s3["MINIO_ROOT_PASSWORD"])
    bucket = urlsplit(env_a["CUMULO_STORAGE_URL"]).hostname
    made = " ".join(str(part) for s in doc["services"].values()
                    for part in [s.get("command") or ""])
    assert re.search(rf"mc mb (--ignore-existing )?\w+/{bucket}\b", made), "no one makes it"
    # Cumulo's own loader takes these settings as they are (no cumulo.toml in the way).
    monkeypatch.chdir(tmp_path)
    for env in envs.values():
        settings = load_settings({k: _interpolated(v) for k, v in env.items()})
        assert settings.public_url == env_a["CUMULO_PUBLIC_URL"]
        assert settings.host == "0.0.0.0"
        assert settings.s3.endpoint_url == env_a["CUMULO_S3_ENDPOINT_URL"]
        # The load balancer's fixed address is the one trusted proxy.
        assert settings.trusted_proxies == (lb["networks"]["default"]["ipv4_address"],)


def test_the_load_balancer_sends_to_both_control_planes() -> None:
    doc = _compose()
    planes = _control_planes(doc)
    conf = _nginx()
    upstreams = _upstreams(conf)
    passed = re.findall(r"proxy_pass\s+http://([\w.-]+)\s*;", conf)
    assert passed and all(name in upstreams for name in passed)
    servers = upstreams[passed[0]]
    assert {host for host, _ in servers} == set(planes)
    assert {port for _, port in servers} == {int(_env(s)["CUMULO_PORT"])
                                             for s in planes.values()}
    # Uploads and long polls stream through it.
    assert re.search(r"client_max_body_size\s+0\s*;", conf)
    assert re.search(r"proxy_request_buffering\s+off\s*;", conf)
    assert re.search(r"proxy_buffering\s+off\s*;", conf)


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_systemd_unit_runs_cumulo_up_with_an_environment_file() -> None:
    unit = _unit()
    service = unit["Service"]
    command = service["ExecStart"].split()
    assert Path(command[0]).name == "cumulo" and command[1:] == ["up"]
    assert service["EnvironmentFile"].startswith("/")
    assert service.get("User") and service.get("Restart")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_environment_example_names_known_settings_and_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key == key.strip() and re.fullmatch(r"[A-Z0-9_]+", key), line
            env[key] = value
    documented = set(re.findall(r"`(CUMULO_[A-Z0-9_]+)`",
                                (ROOT / "docs" / "configuration.md").read_text()))
    commented = set(re.findall(r"^# (CUMULO_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    compose = {k for s in _control_planes(_compose()).values() for k in _env(s)}
    for key in set(env) | commented | compose:
        assert key in documented, f"{key} is not a setting docs/configuration.md lists"
    assert set(SHARED) <= set(env)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env)
    assert settings.database_url.startswith("postgresql://")
    assert settings.storage_url.startswith("s3://")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # The unit names /opt/cumulo/bin/cumulo, which verify checks is executable: point it at
    # this environment's instead.
    exe = Path(sys.executable).parent / "cumulo"
    unit = tmp_path / "cumulo.service"
    unit.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", UNIT.read_text(),
                           flags=re.MULTILINE))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    # Unknown keys and bad values are only warned about (exit status 0): no output at all.
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _without_compose() -> str | None:
    """Why ``docker compose`` cannot run here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "there is no docker command here"
    found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           timeout=30)
    return None if found.returncode == 0 else "the docker command here has no compose plugin"


WITHOUT_COMPOSE = _without_compose()


@pytest.mark.skipif(WITHOUT_COMPOSE is not None,
                    reason=f"docker compose config cannot run: {WITHOUT_COMPOSE}")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CUMULO_ADMIN_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
