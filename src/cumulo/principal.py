"""Who is calling, and the one question every part asks about them: may they do this?

A ``Principal`` is set by the server's auth dependency and read by every service. Its
``require(action, resource)`` asks the decision point, which the access service installs when
the server starts (:mod:`cumulo.access.authz`): routes (through :mod:`cumulo.permissions`),
the SQL engine, the job launcher, pipeline runs and the console all ask it the same way, so
the decision is made in one place. Core code cannot import a service, hence the hook.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from cumulo.errors import Forbidden, Unauthorized

__all__ = ["NOT_FOR_JOBS", "PROJECT_HEADER", "Decider", "Principal", "current_principal",
           "decision_ready", "install_decider", "request_project", "require_each",
           "source_address"]

# The address the current request comes from (set by the server's auth dependency), for
# conditions on source address; contextvars follow a request into its worker thread.
source_address: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cumulo_source_address", default=None)
# The project the current request says it works in (``X-Cumulo-Project``: the CLI's and SDK's
# CUMULO_PROJECT, a job's own project): what is decided in it when the resource itself belongs
# to no project's kind (MLflow's experiments and models). It can give no more than the
# caller's own rights in that project.
request_project: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cumulo_request_project", default=None)
PROJECT_HEADER = "x-cumulo-project"


class Decider(Protocol):
    def check(self, principal: Principal, action: str, resource: str, *,
              owner: str | None = None, project: str | None = None,
              quiet: bool = False) -> str | None:
        """None when allowed, else why not (one line, naming what decided). A refusal goes to
        the audit log unless ``quiet`` (a list filtered to what the caller may see)."""

    def ready(self, principal: Principal) -> bool:
        """Whether ``check`` can answer without the database (safe on the event loop)."""


# What a job's own token never does, whatever its user may: it acts for one job while that job
# runs, on the job's data, models and tracking; managing credentials, buckets and people is
# for people. Used when no decider is installed (code run outside a server); the access
# service's decider refuses the same.
NOT_FOR_JOBS = {"tokens:Manage": "manage tokens", "files:CreateBucket": "create buckets",
                "files:DeleteBucket": "delete buckets"}
_decider: list[Decider] = []


def install_decider(decider: Decider | None) -> None:
    """Make ``decider`` the decision point of this process (None: none)."""
    _decider[:] = [decider] if decider is not None else []


def decision_ready(principal: Principal) -> bool:
    """Whether asking about ``principal`` now needs no database (so it may be asked on the
    event loop); True when no decider is installed."""
    return not _decider or _decider[0].ready(principal)


@dataclass(frozen=True)
class Principal:
    user_id: int
    user_name: str
    is_admin: bool
    token_id: int
    via_job: bool = False  # the caller is a job, with the token made for it
    token_name: str = ""

    def check(self, action: str, resource: str = "*", *, owner: str | None = None,
              project: str | None = None, quiet: bool = False) -> str | None:
        """None when this caller may take ``action`` (``tables:Read``) on ``resource``
        (``table/sales/orders``), else why not."""
        if _decider:
            return _decider[0].check(self, action, resource, owner=owner, project=project,
                                     quiet=quiet)
        if self.via_job and action in NOT_FOR_JOBS:
            return (f"a job's token cannot {NOT_FOR_JOBS[action]}; it acts only for its job, "
                    "while the job runs")
        return None

    def can(self, action: str, resource: str = "*", *, owner: str | None = None,
            project: str | None = None) -> bool:
        """Whether this caller may; a no is not audited (for filtering what to show)."""
        return self.check(action, resource, owner=owner, project=project, quiet=True) is None

    def require(self, action: str, resource: str = "*", *, owner: str | None = None,
                project: str | None = None) -> None:
        """Refuse (Forbidden, saying which statement decided) what this caller may not do."""
        why = self.check(action, resource, owner=owner, project=project)
        if why is not None:
            raise Forbidden(f"{self.user_name} may not {action} on {resource}: {why}",
                            details={"action": action, "resource": resource})


def require_each(principal: Principal, action: str, resources: Iterable[str]) -> None:
    """``action`` on every one of ``resources`` (each object under a prefix that a job reads or
    a delete removes): a deny on some of them refuses the whole, naming the first refused; only
    that refusal is audited, not one entry per object."""
    for resource in resources:
        if not principal.can(action, resource):
            principal.require(action, resource)


def current_principal(request: Request) -> Principal:
    """FastAPI dependency for routes that need to know the caller."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route mounted outside the authenticated router: a bug
        raise Unauthorized("this route needs a token: send 'Authorization: Bearer <token>'")
    return principal  # type: ignore[no-any-return]
