"""Start the control plane: check what it depends on, migrate, bootstrap, then serve."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cumulo.access.oidc import check_settings
from cumulo.access.tokens import bootstrap_admin
from cumulo.config import Settings
from cumulo.db import check_database, make_engine, redact_url, upgrade
from cumulo.errors import Conflict
from cumulo.logs import add_log_file, configure_logging
from cumulo.server import leftovers
from cumulo.server.app import create_app
from cumulo.server.fastpath import InvokeFastPath
from cumulo.server.logs import server_log
from cumulo.server.protocol import BoundedHttpToolsProtocol
from cumulo.storage.backends import Backend, open_backend

__all__ = ["Prepared", "prepare", "serve"]

log = logging.getLogger("cumulo.server")


@dataclass
class Prepared:
    engine: Engine
    storage: Backend
    admin_token: str | None  # set only on the first start, when the admin was just created


def prepare(settings: Settings) -> Prepared:
    """Everything before serving; each failure is one CumuloError with a clear message."""
    # What Cumulo writes is its owner's alone (databases, objects, logs, job files), whatever
    # the umask it was started with; and so is its home, made before or not.
    os.umask(0o077)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.home.chmod(0o700)
    engine = make_engine(settings.database_url)
    check_database(engine)
    upgrade(engine)
    storage = open_backend(settings)
    storage.check()
    leftovers.sweep(settings, storage)  # what a crash left: temp uploads, partial results
    with Session(engine) as session:
        admin_token = bootstrap_admin(session, settings.admin_token)
    if settings.oidc is not None:  # a role or group the [oidc] settings name must exist
        check_settings(settings.oidc)
    return Prepared(engine=engine, storage=storage, admin_token=admin_token)


def _bound_malloc() -> None:
    """Keep glibc's malloc from holding on to freed transfer buffers.

    Uploads and downloads pass through in 1 MiB buffers from many threads. glibc serves
    buffers that large with mmap and returns them when freed, until the first free: it then
    raises its threshold (up to 32 MiB), after which such buffers come from per-thread
    arenas (up to 8 per core) that keep the memory. A fixed threshold and two arenas keep
    a server's growth during 1 GiB transfers near 30 MiB instead of 100+ (bench/s3.py). The
    environment's MALLOC_* settings, where given, win; elsewhere than glibc, nothing to do.
    """
    if any(name.startswith("MALLOC_") for name in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_arena_max, m_mmap_threshold = -8, -3  # glibc's <malloc.h>
    mallopt(m_arena_max, 2)
    mallopt(m_mmap_threshold, 128 * 1024)


def _loopback(proxy: str) -> bool:
    return ipaddress.ip_network(proxy, strict=False).overlaps(
        ipaddress.ip_network("127.0.0.0/8" if ":" not in proxy else "::1/128"))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(
                f"port {port} on {host} is already in use; stop what holds it or pick another "
                "with 'cumulo up --port N'"
            ) from exc
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, *, on_ready: Callable[[Prepared], None] | None = None) -> None:
    configure_logging(settings.log_level)
    _bound_malloc()
    prepared = prepare(settings)
    add_log_file(server_log(settings))  # cumulo logs reads it (server/logs.py)
    sock = _bind(settings.host, settings.port)
    app = create_app(settings, prepared.engine, prepared.storage)
    config = uvicorn.Config(
        InvokeFastPath(app, lambda: app.state.services,  # invocations: the short way
                       metrics=settings.metrics,
                       # (traced, an invocation takes the app's way, where spans are made)
                       enabled=not settings.otel_endpoint),
        log_config=None, access_log=False, loop="auto", http=BoundedHttpToolsProtocol,
        timeout_graceful_shutdown=5, server_header=False,
        # Longer than clients keep an idle connection (httpx: 5 s, as uvicorn's own default):
        # the client closes first, so a request never meets a connection closing under it.
        timeout_keep_alive=30,
        # X-Forwarded-For only from the reverse proxies named in trusted_proxies: from anyone
        # else (loopback included: any local process, a job, could then choose its source
        # address) it would let callers pass the sign-in rate limit and source-address
        # conditions and write what they like into the audit log.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
    )
    if any(_loopback(proxy) for proxy in settings.trusted_proxies):
        log.warning("trusted_proxies includes a loopback address: any process on this machine "
                    "(a job) can choose the source address it is seen from")
    log.info(
        "cumulo serving on %s", settings.url,
        extra={"database": redact_url(settings.database_url), "storage": prepared.storage.url},
    )
    if on_ready:
        on_ready(prepared)
    uvicorn.Server(config).run(sockets=[sock])
