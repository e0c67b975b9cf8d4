"""The built-in roles, written as the same policy documents users write.

A role is only a policy with a well-known name, so ``access:Check`` and the console explain a
role's decision exactly as they explain a custom policy's. Roles only allow: a deny in a role
would beat any grant given on top of it, and "developer, plus approving models in project x"
must be something an administrator can express.

Work a caller starts themselves (jobs, SQL queries) is readable and cancellable by its owner:
those statements carry ``"owner": "self"``, so an ``admin`` or a custom grant is needed to
touch someone else's.
"""

from __future__ import annotations

from typing import Any

from cumulo.access.actions import ACTIONS
from cumulo.access.policy import Policy, parse_policy
from cumulo.errors import NotFound

__all__ = ["ROLES", "role"]


def _allow(actions: list[str], *, sid: str, own: bool = False) -> dict[str, Any]:
    statement: dict[str, Any] = {"sid": sid, "effect": "allow", "actions": actions,
                                 "resources": ["*"]}
    if own:
        statement["conditions"] = {"owner": "self"}
    return statement


_TABLES_BUT_GRANT = sorted(a for a in ACTIONS if a.startswith("tables:") and a != "tables:Grant")
_OWN_JOBS = ["jobs:Read", "jobs:Cancel", "jobs:Retry", "jobs:Write", "jobs:Delete"]
# A notebook is opened by its owner (and those it is shared with: cumulo.notebooks.service).
_OWN_NOTEBOOKS = ["notebooks:Read", "notebooks:Open", "notebooks:Start", "notebooks:Stop",
                  "notebooks:Delete", "notebooks:Share"]

# A query's results were computed under its author's row filters and column masks, so even a
# viewer reads only their own (see the viewer below).
_READ_ALL = sorted({name for name in ACTIONS
                    if name.endswith((":List", ":Read")) and name not in ("audit:Read",
                                                                           "sql:Read")}
                   | {"files:ListBuckets", "files:Get"})

_DOCUMENTS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "admin": ("everything, everywhere", [
        _allow(["*"], sid="everything"),
    ]),
    "developer": ("builds and runs data and ML work; no user, policy or audit administration, "
                  "no model approval, no grants, masks or row filters, only their own jobs "
                  "and queries", [
        # Tables, all but tables:Grant: who sees what (grants, masks, row filters) is the
        # business of whoever manages policies, or a developer could drop a mask set for them.
        _allow(["files:*", *_TABLES_BUT_GRANT, "sql:Run", "clusters:*", "models:List",
                "models:Read",
                "models:Register", "models:Update", "models:Delete", "tracking:*",
                "endpoints:*", "pipelines:*", "streams:*", "jobs:Submit", "jobs:List",
                "notebooks:Create", "notebooks:List", "monitors:*", "alerts:List",
                "budgets:List", "budgets:Read", "costs:Read", "envs:*", "tokens:Manage",
                "users:List", "groups:List", "projects:List", "projects:Read"], sid="build"),
        _allow(["jobs:*", "sql:Read", "notebooks:*"], sid="own-work", own=True),
    ]),
    "data-scientist": ("queries and reads data, runs jobs and pipelines, tracks experiments, "
                       "registers models and calls endpoints", [
        _allow(["tables:List", "tables:Read", "sql:Run", "files:ListBuckets", "files:List",
                "files:Get", "files:Put", "jobs:Submit", "jobs:List", "tracking:*",
                "models:List", "models:Read", "models:Register", "models:Update",
                "endpoints:List", "endpoints:Read", "endpoints:Invoke", "clusters:List",
                "clusters:Read", "pipelines:List", "pipelines:Read", "pipelines:Run",
                "envs:List", "envs:Read", "envs:Create", "costs:Read", "tokens:Manage",
                "streams:List", "streams:Read", "streams:Write", "notebooks:Create",
                "notebooks:List", "monitors:List", "monitors:Read", "monitors:Run",
                "alerts:List"],
               sid="explore"),
        _allow([*_OWN_JOBS, "sql:Read", *_OWN_NOTEBOOKS], sid="own-work", own=True),
    ]),
    "analyst": ("reads tables and runs SQL", [
        _allow(["tables:List", "tables:Read", "sql:Run", "costs:Read", "tokens:Manage"],
               sid="query"),
        _allow(["sql:Read"], sid="own-queries", own=True),
    ]),
    "viewer": ("lists and reads everything but the audit log; changes nothing", [
        _allow([*_READ_ALL, "tokens:Manage"], sid="read"),
        _allow(["sql:Read"], sid="own-queries", own=True),
    ]),
    "invoker": ("calls endpoints, nothing else", [
        _allow(["endpoints:Invoke"], sid="invoke"),
    ]),
}

ROLES: dict[str, tuple[str, Policy]] = {
    name: (description, parse_policy({"statements": statements}, name=name))
    for name, (description, statements) in _DOCUMENTS.items()
}


def role(name: str) -> Policy:
    """The built-in role's policy; ``NotFound`` lists the roles when there is none so named."""
    try:
        return ROLES[name][1]
    except KeyError:
        raise NotFound(f"no role {name!r}; the roles are {', '.join(ROLES)}",
                       details={"role": name, "roles": list(ROLES)}) from None
