"""The tokens each endpoint's replicas take, as the endpoint manager keeps them for the
replicas' gates (:mod:`cumulo.serving.gate`).

:class:`AllowedTokens` reads every live token (:func:`cumulo.access.tokens.live_tokens`) every
``REFRESH`` seconds, in a thread of the manager, and keeps, for each endpoint running here, the
SHA-256 and expiry of those whose holder may ``endpoints:Invoke`` it (asked of the decision
point, as the control plane's route asks). When an endpoint's set changes it is written to
``<home>/serving/tokens/<endpoint>.json`` (0600, replaced whole), which the endpoint's local
replicas look at ten times a second; Ray Serve replicas ask for it over HTTP and are answered
as soon as it changes (``GET /api/v1/endpoints/NAME/tokens``). So a revoked token, or a right
taken back, stops working on the replicas within about a second, and a new one starts working
as soon. Conditions on the caller's source address cannot be known ahead of a request: a
statement that holds only for some addresses does not count here (the control plane's route
checks them per request).

Each set also holds the keys of the live control planes (:mod:`cumulo.leases`; each made
when its control plane registers): a control plane's ``/endpoints/NAME/invocations`` has
authorized its caller already (with a bearer token or the console's login cookie) and forwards
the request to the replicas with its key, whichever control plane runs them.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session

from cumulo.access.tokens import live_tokens
from cumulo.leases import live_key_hashes

__all__ = ["REFRESH", "SERVED_NAMES", "AllowedTokens"]

log = logging.getLogger("cumulo.serving")

REFRESH = 0.25  # seconds between reads of the live tokens
# Names (a load balancer's, a DNS name) the replicas answer under besides their own address
# and the public URL's host. A stand-in for a setting until config has one.
SERVED_NAMES: tuple[str, ...] = ()


class AllowedTokens:
    """Per endpoint: the hashes and expiries of the tokens that may invoke it, and the
    control plane's own key; written under ``root`` for local replicas whenever they change.
    ``endpoints`` names the endpoints running here (nothing is read while there are none)."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]],
                 root: Path, *, endpoints: Callable[[], Iterable[str]] = tuple,
                 key: Callable[[], str] | None = None) -> None:
        self.sessions = sessions
        self.root = root
        self.endpoints = endpoints
        # This control plane's key (its lease's, where there is one): only its hash is stored.
        own = "cml_" + secrets.token_urlsafe(32)
        self._key = key or (lambda: own)
        # endpoint -> (digest, tokens); each value replaced whole: read by the routes'
        # threads and the event loop.
        self.current: dict[str, tuple[str, dict[str, float | None]]] = {}
        self._writes = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self._key()

    def path_for(self, endpoint: str) -> Path:
        return self.root / f"{endpoint}.json"

    def digest(self, endpoint: str) -> str:
        return self.current.get(endpoint, ("", {}))[0]

    def doc(self, endpoint: str) -> dict[str, Any]:
        """An endpoint's set as replicas take it: ``{"digest", "tokens"}``."""
        digest, tokens = self.current.get(endpoint, ("", {}))
        return {"digest": digest, "tokens": tokens}

    def read(self, endpoint: str) -> dict[str, Any]:
        """An endpoint's set as replicas take it, read now and kept nowhere: for the replicas
        of an endpoint another control plane runs."""
        with self.sessions() as session:
            live = live_tokens(session)
            planes = {h: None for h in live_key_hashes(session)}
        tokens: dict[str, float | None] = {
            h: expires for h, (expires, who) in live.items()
            if who.can("endpoints:Invoke", f"endpoint/{endpoint}")}
        tokens.update(planes)
        digest = hashlib.sha256(orjson.dumps(tokens, option=orjson.OPT_SORT_KEYS))
        return {"digest": digest.hexdigest()[:24], "tokens": tokens}

    def refresh(self, names: Iterable[str] | None = None) -> bool:
        """Read the live tokens and who may invoke what, for ``names`` (default: every
        endpoint running here); True, with files rewritten, if a set changed."""
        wanted = sorted(set(self.endpoints() if names is None else names))
        if not wanted:
            return False
        with self.sessions() as session:
            live = live_tokens(session)
            planes = {h: None for h in live_key_hashes(session)}
        planes[hashlib.sha256(self.key.encode()).hexdigest()] = None
        changed = False
        for name in wanted:
            resource = f"endpoint/{name}"
            tokens = {h: expires for h, (expires, who) in live.items()
                      if who.can("endpoints:Invoke", resource)}
            tokens.update(planes)
            known = self.current.get(name)
            if known is not None and known[1] == tokens:
                continue
            digest = hashlib.sha256(orjson.dumps(tokens, option=orjson.OPT_SORT_KEYS))
            self.current[name] = (digest.hexdigest()[:24], tokens)
            self._write(name)
            changed = True
        if names is None:  # endpoints gone from here: their sets go too
            for gone in set(self.current) - set(wanted):
                del self.current[gone]
                self.path_for(gone).unlink(missing_ok=True)
        return changed

    def _write(self, endpoint: str) -> None:
        path = self.path_for(endpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(self._writes)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(self.doc(endpoint)))
            os.replace(tmp, path)  # a replica reads the whole new set or the old one
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Read the set now (replicas started next find it), then every REFRESH seconds."""
        self.refresh_logged()
        self._thread = threading.Thread(target=self._run, daemon=True, name="endpoint-tokens")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(REFRESH):
            self.refresh_logged()

    def refresh_logged(self, names: Iterable[str] | None = None) -> None:
        """``refresh``, with a failure logged: the replicas keep the set they have."""
        try:
            self.refresh(names)
        except Exception:  # the database is away: the replicas keep the set they have
            log.exception("reading the live tokens for the endpoints failed")
