"""Work on a stream that one control plane runs at a time (deliveries, scorers): each row in an
active state is claimed by a live control plane (one claim wins: a conditional update of its
``owner``), and run there on a thread of its own until it is stopped, removed, or claimed by
another control plane (this one's lease ran out).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cumulo.leases import live_planes

if TYPE_CHECKING:
    from cumulo.leases import Membership

__all__ = ["Claims", "Runner"]

log = logging.getLogger("cumulo.streams")


class Runner(Protocol):
    """One row's work: a thread that ends soon after ``stopping`` is set."""

    stopping: threading.Event
    thread: threading.Thread


class Claims:
    """The rows of ``model`` (with ``id``, ``state`` and ``owner`` columns) in one of
    ``states`` that this control plane runs: ``make(row_id)`` builds each one's runner."""

    def __init__(self, what: str, model: Any, sessions: sessionmaker[Session],
                 plane: Membership | None, make: Callable[[int], Runner], *,
                 states: tuple[str, ...] = ("running",), look_every: float = 2.0) -> None:
        self.what = what
        self.model = model
        self.sessions = sessions
        self.plane = plane
        self.make = make
        self.states = states
        self.look_every = look_every
        self.me = plane.id if plane is not None else "local"
        self._runners: dict[int, Runner] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"streams-{self.what}")
        self._thread.start()

    def wake(self) -> None:
        """Look at the rows now (one was made, stopped or started)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.look()
            except Exception:  # a bad look must not end the work
                log.exception("streams: looking at %s failed", self.what)
            self._wake.wait(self.look_every)
            self._wake.clear()

    def look(self) -> None:
        """Claim the active rows no live control plane holds; run those that are ours, stop
        the runners of those that are not (any more)."""
        model = self.model
        valid = self.plane is None or self.plane.valid()
        with self.sessions() as session:
            live = {p.id for p in live_planes(session)} if self.plane is not None else set()
            if valid:
                session.execute(update(model).where(
                    model.state.in_(self.states),
                    or_(model.owner.is_(None), model.owner.not_in(sorted(live) or [""])))
                    .values(owner=self.me))
                session.commit()
            mine = set(session.scalars(select(model.id).where(
                model.state.in_(self.states), model.owner == self.me))) if valid else set()
        with self._lock:
            for row_id in [r for r in self._runners if r not in mine]:
                self._runners.pop(row_id).stopping.set()
            for row_id in mine:
                running = self._runners.get(row_id)
                if running is None or not running.thread.is_alive():
                    self._runners[row_id] = fresh = self.make(row_id)
                    fresh.thread.start()

    def runner(self, row_id: int) -> Runner | None:
        """The runner of a row run here, if any."""
        with self._lock:
            return self._runners.get(row_id)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            runner.stopping.set()
        for runner in runners:
            runner.thread.join(10)
