"""Alerts: what an operator should see, shown and sent without ever holding work up.

Any service raises one with :func:`notify` (budgets crossed, cost anomalies, a monitor's
drift). It is a row of ``alerts``, written with the caller's transaction: the console's banner
(``GET /api/v1/alerts``) and ``cumulo status`` show it until it is dismissed. When it names a
webhook, :class:`WebhookSender`, a thread of its own, POSTs it as JSON::

    {"id": 7, "source": "budget", "subject": "team-a", "severity": "warning",
     "message": "...", "details": {...}, "created_at": "2026-12-04T10:00:00+00:00"}

A POST that fails (no answer within the timeout, a refused connection, a status of 300 or
more) is tried again after 1, 2, 4, 8 ... seconds (``backoff`` doubled each time), up to
``attempts`` tries; then the alert's delivery is ``failed``, with the last error, and is shown
so (``cumulo budgets show``, ``cumulo alerts``). The sender reads what to send from the
database, so an alert raised by any control plane, or before a restart, is still sent; a
webhook is checked like any address a user gives (:mod:`cumulo.netguard`).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from cumulo.db import utcnow
from cumulo.errors import Invalid
from cumulo.metering.models import Alert

__all__ = ["SEVERITIES", "WebhookSender", "alert_doc", "check_webhook", "dismiss", "notify",
           "open_alerts"]

SEVERITIES = ("info", "warning", "critical")
log = logging.getLogger("cumulo.alerts")
# Set while a sender runs: notify wakes it once the alert is committed.
_wake = threading.Event()


def check_webhook(url: str | None, *, option: str = "--webhook") -> str | None:
    """A webhook's URL, checked for its form (its address is checked when it is sent)."""
    if url is None or url == "":
        return None
    if not url.startswith(("http://", "https://")) or len(url) > 2048 or " " in url:
        raise Invalid(f"{option} {url!r} is not an http:// or https:// URL")
    return url


def notify(session: Session, *, source: str, subject: str, severity: str, message: str,
           details: dict[str, Any] | None = None, webhook: str | None = None) -> Alert:
    """Raise an alert: shown in the console's banner and ``cumulo status``, and POSTed to
    ``webhook`` if one is given, in the background. It is added to ``session`` and written
    when the caller commits (nothing is sent for a transaction rolled back)."""
    if severity not in SEVERITIES:
        raise Invalid(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if not source or not subject:
        raise Invalid("an alert needs a source and a subject")
    url = check_webhook(webhook, option="webhook")
    now = utcnow()
    alert = Alert(source=source[:32], subject=subject[:128], severity=severity,
                  message=message, details=dict(details or {}), created_at=now,
                  webhook=url, delivery="pending" if url else "none", attempts=0,
                  next_attempt_at=now if url else None)
    session.add(alert)
    session.flush()
    log.warning("alert %s/%s (%s): %s", source, subject, severity, message)
    if url:
        event.listen(session, "after_commit", lambda _s: _wake.set(), once=True)
    return alert


def alert_doc(alert: Alert) -> dict[str, Any]:
    """An alert as the API shows it."""
    return {"id": alert.id, "source": alert.source, "subject": alert.subject,
            "severity": alert.severity, "message": alert.message, "details": alert.details,
            "created_at": alert.created_at.isoformat(),
            "dismissed_at": alert.dismissed_at.isoformat() if alert.dismissed_at else None,
            "webhook": alert.webhook, "delivery": alert.delivery, "attempts": alert.attempts,
            "last_error": alert.last_error,
            "sent_at": alert.sent_at.isoformat() if alert.sent_at else None}


def open_alerts(session: Session, *, source: str | None = None, subject: str | None = None,
                include_dismissed: bool = False, limit: int = 50) -> list[Alert]:
    """The latest alerts, newest first: those not dismissed unless ``include_dismissed``."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if not include_dismissed:
        query = query.where(Alert.dismissed_at.is_(None))
    if source:
        query = query.where(Alert.source == source)
    if subject:
        query = query.where(Alert.subject == subject)
    return list(session.scalars(query))


def dismiss(session: Session, alert_id: int | None = None) -> int:
    """Take an alert (or, with no id, every alert) off the banner; how many were."""
    query = update(Alert).where(Alert.dismissed_at.is_(None)).values(dismissed_at=utcnow())
    if alert_id is not None:
        query = query.where(Alert.id == alert_id)
    done = session.execute(query.execution_options(synchronize_session=False))
    session.commit()
    return int(done.rowcount)  # type: ignore[attr-defined]


def _payload(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "source": alert.source, "subject": alert.subject,
            "severity": alert.severity, "message": alert.message, "details": alert.details,
            "created_at": alert.created_at.isoformat()}


class WebhookSender:
    """Sends pending alerts' webhooks, retrying with backoff, on a thread of its own."""

    def __init__(self, sessions: sessionmaker[Session], *, allow_internal: bool = False,
                 timeout: float = 5.0, attempts: int = 5, backoff: float = 1.0,
                 every: float = 2.0) -> None:
        self.sessions = sessions
        self.allow_internal = allow_internal
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="alert-webhooks")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        _wake.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception:  # a bad round must not end the sending
                log.exception("alerts: sending webhooks failed")
            _wake.wait(self.every)
            _wake.clear()

    def send_due(self, *, now: datetime | None = None) -> int:
        """Try each alert whose next attempt is due once; how many were tried."""
        from cumulo import netguard  # httpx's client, loaded with the first webhook

        now = now or utcnow()
        with self.sessions() as session:
            due = list(session.scalars(
                select(Alert).where(Alert.delivery == "pending", Alert.next_attempt_at <= now)
                .order_by(Alert.id).limit(20)))
            if not due:
                return 0
            with netguard.client(allow_internal=self.allow_internal,
                                 timeout=self.timeout) as http:
                for alert in due:
                    if self._stop.is_set():
                        break
                    self._attempt(session, http, alert)
            return len(due)

    def _attempt(self, session: Session, http: Any, alert: Alert) -> None:
        error: str | None = None
        try:
            answer = http.post(alert.webhook, json=_payload(alert),
                               headers={"User-Agent": "cumulo-alerts"})
            if answer.status_code >= 300:
                error = f"the webhook answered {answer.status_code}"
        except Exception as exc:  # refused, timed out, not allowed: all reported the same way
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        alert.attempts += 1
        if error is None:
            alert.delivery, alert.sent_at, alert.last_error = "sent", utcnow(), None
            alert.next_attempt_at = None
        else:
            alert.last_error = error
            if alert.attempts >= self.attempts:
                alert.delivery, alert.next_attempt_at = "failed", None
                log.error("alerts: webhook of alert %d failed %d times: %s", alert.id,
                          alert.attempts, error)
            else:
                wait = self.backoff * 2 ** (alert.attempts - 1)
                alert.next_attempt_at = utcnow() + timedelta(seconds=wait)
        session.commit()
