"""The live tokens, as the endpoint manager keeps them for the replicas' gates
(:mod:`cumulo.serving.gate`).

:class:`AllowedTokens` reads every live token's SHA-256 and expiry
(:func:`cumulo.access.tokens.live_token_hashes`) every ``REFRESH`` seconds, in a thread of the
manager, and when the set changed writes it to ``<home>/serving/tokens.json`` (0600, replaced
whole), which every local replica looks at ten times a second; Ray Serve replicas ask for it
over HTTP and are answered as soon as it changes (``GET /api/v1/endpoints/NAME/tokens``). So a
revoked token stops working on the replicas within a second, and a new one starts working as
soon.

The set also holds the control plane's own key, made at each start: the control plane's
``/endpoints/NAME/invocations`` has authenticated its caller already (with a bearer token or
the console's login cookie) and forwards the request to the replicas with this key.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session

from cumulo.access.tokens import live_token_hashes

__all__ = ["REFRESH", "SERVED_NAMES", "AllowedTokens"]

log = logging.getLogger("cumulo.serving")

REFRESH = 0.25  # seconds between reads of the live tokens
# Names (a load balancer's, a DNS name) the replicas answer under besides their own address
# and the public URL's host. A stand-in for a setting until config has one.
SERVED_NAMES: tuple[str, ...] = ()


class AllowedTokens:
    """The live tokens' hashes and expiries, and the control plane's own key; written to
    ``path`` for local replicas whenever they change."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]],
                 path: Path, *, wanted: Callable[[], bool] = lambda: True) -> None:
        self.sessions = sessions
        self.path = path
        self.wanted = wanted  # False while no endpoint runs here: the tokens are not read
        self.key = "cml_" + secrets.token_urlsafe(32)  # this start's own key: never stored
        self._key_hash = hashlib.sha256(self.key.encode()).hexdigest()
        # (digest, tokens), replaced whole: read by the routes' threads and the event loop.
        self.current: tuple[str, dict[str, float | None]] = ("", {})
        self._writes = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def digest(self) -> str:
        return self.current[0]

    def doc(self) -> dict[str, Any]:
        """The set as replicas take it: ``{"digest", "tokens"}``."""
        digest, tokens = self.current
        return {"digest": digest, "tokens": tokens}

    def refresh(self) -> bool:
        """Read the live tokens; True, with the file rewritten, if the set changed."""
        with self.sessions() as session:
            live = live_token_hashes(session)
        live[self._key_hash] = None
        if self.current[0] and live == self.current[1]:
            return False
        digest = hashlib.sha256(orjson.dumps(live, option=orjson.OPT_SORT_KEYS)).hexdigest()
        self.current = (digest[:24], live)
        self._write()
        return True

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{next(self._writes)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(self.doc()))
            os.replace(tmp, self.path)  # a replica reads the whole new set or the old one
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
            if self.wanted():
                self.refresh_logged()

    def refresh_logged(self) -> None:
        """``refresh``, with a failure logged: the replicas keep the set they have."""
        try:
            self.refresh()
        except Exception:  # the database is away: the replicas keep the set they have
            log.exception("reading the live tokens for the endpoints failed")
