"""The registry of actions a policy can allow or deny, and the wildcard grammar they share
with resources.

An action is ``service:Verb`` (``tables:Read``); a resource is ``kind/name/...``
(``table/sales/orders``). Every API route checks one registered action on one resource, so a
policy that names an action missing from here could never take effect: ``parse_policy``
refuses it rather than let a typo grant or deny nothing in silence.

Resources each action is checked on::

    files        bucket/<bucket>, bucket/<bucket>/<key>
    tables       table/<db>/<table>, database/<db>
    sql          sql (to run), query/<id> (a query's status and results)
    clusters     cluster/<name>         jobs       job/<id>
    models       model/<name>           tracking   experiment/<name>
    endpoints    endpoint/<name>        pipelines  pipeline/<name>
    users        user/<name>            groups     group/<name>
    policies     policy/<name>          projects   project/<name>
    tokens       token/<id>, key/<id>   audit      audit
    streams      stream/<name>         notebooks  notebook/<name>
    metrics      metrics                server     server (its own log)
    budgets      budget/<name>          alerts     alert/<id>
    monitors     monitor/<name>
"""

from __future__ import annotations

import functools
import re

__all__ = ["ACTIONS", "RESOURCE_KINDS", "SERVICES", "known", "matches", "resource_kinds",
           "translate", "wildcard"]

ACTIONS: dict[str, str] = {
    "files:ListBuckets": "list the buckets",
    "files:CreateBucket": "create a bucket",
    "files:DeleteBucket": "delete a bucket",
    "files:List": "list the objects of a bucket",
    "files:Get": "download an object",
    "files:Put": "upload an object",
    "files:Delete": "delete an object",
    "tables:List": "list databases and tables",
    "tables:Read": "read a table's rows and schema",
    "tables:Write": "append, overwrite, update or delete a table's rows",
    "tables:Create": "create a table",
    "tables:Drop": "drop a table",
    "tables:Grant": "manage a table's grants, column masks and row filters",
    "tables:CreateDatabase": "create a database",
    "tables:DropDatabase": "drop a database",
    "sql:Run": "run a SQL query",
    "sql:Read": "read a query's status and results",
    "clusters:List": "list clusters",
    "clusters:Read": "show a cluster",
    "clusters:Create": "create a cluster",
    "clusters:Update": "resize or change a cluster",
    "clusters:Delete": "delete a cluster",
    "jobs:List": "list jobs",
    "jobs:Read": "show a job and its logs",
    "jobs:Submit": "submit a job",
    "jobs:Cancel": "cancel a job",
    "jobs:Retry": "retry a job",
    "jobs:Write": "report a job's metrics, outputs and checkpoints (what a job's token does)",
    "jobs:Delete": "delete an ended job and its files",
    "envs:List": "list environments",
    "envs:Read": "show an environment, its packages and build log",
    "envs:Create": "create a named environment",
    "envs:Delete": "remove a named environment, or prune unused ones",
    "models:List": "list registered models",
    "models:Read": "show a model and its versions",
    "models:Register": "register a model or a new version",
    "models:Update": "change a model's description, tags or stage",
    "models:Approve": "approve a model version for production",
    "models:Delete": "delete a model or a version",
    "tracking:Read": "read MLflow experiments and runs",
    "tracking:Write": "create and log to MLflow experiments and runs",
    "endpoints:List": "list endpoints",
    "endpoints:Read": "show an endpoint",
    "endpoints:Create": "create an endpoint",
    "endpoints:Update": "update an endpoint or roll out a new variant",
    "endpoints:Delete": "delete an endpoint",
    "endpoints:Invoke": "send a request to an endpoint",
    "pipelines:List": "list pipelines",
    "pipelines:Read": "show a pipeline and its runs",
    "pipelines:Create": "create a pipeline",
    "pipelines:Update": "change a pipeline",
    "pipelines:Delete": "delete a pipeline",
    "pipelines:Run": "start a pipeline run",
    "pipelines:Schedule": "set or clear a pipeline's schedule",
    "costs:Read": "read one's own usage and costs",
    "costs:ReadAll": "read everyone's usage and costs",
    "budgets:List": "list budgets",
    "budgets:Read": "show a budget, its alerts and the actions it took",
    "budgets:Manage": "create, change and remove budgets (and the actions they take)",
    "alerts:List": "list alerts (the console's banner, cumulo status)",
    "alerts:Dismiss": "dismiss alerts from the banner",
    "tokens:Manage": "create, list and revoke one's own API tokens",
    "users:List": "list users",
    "users:Read": "show a user",
    "users:Manage": "create, change and remove users",
    "groups:List": "list groups",
    "groups:Read": "show a group and its members",
    "groups:Manage": "create, change and remove groups and their members",
    "policies:List": "list policies",
    "policies:Read": "show a policy",
    "policies:Manage": "create, change, attach and remove policies",
    "projects:List": "list projects",
    "projects:Read": "show a project",
    "projects:Manage": "create, change and remove projects and their members",
    "access:Check": "simulate a decision with the policy simulator",
    "backups:List": "list backup schedules, their runs and the backups they made",
    "backups:Read": "show what a backup holds",
    "backups:Schedule": "create or remove a backup schedule",
    "backups:Run": "back up (or drill) now",
    "backups:Restore": "put one bucket, table, model version or pipeline back from a backup",
    "streams:List": "list streams",
    "streams:Read": "describe a stream and read its records",
    "streams:Write": "put records into a stream",
    "streams:Create": "create a stream",
    "streams:Delete": "delete a stream",
    "notebooks:List": "list notebooks",
    "notebooks:Read": "show a notebook",
    "notebooks:Create": "create a notebook (a JupyterLab server run as a job)",
    "notebooks:Open": "open a notebook's JupyterLab, through /notebooks/NAME/",
    "notebooks:Start": "start a stopped notebook",
    "notebooks:Stop": "stop a running notebook",
    "notebooks:Delete": "delete a notebook",
    "notebooks:Share": "share a notebook with another user, or stop sharing it",
    "monitors:List": "list model monitors",
    "monitors:Read": "show a model monitor, its runs and their figures",
    "monitors:Create": "create a model monitor of an endpoint",
    "monitors:Delete": "remove a model monitor",
    "monitors:Run": "run a model monitor now",
    "audit:Read": "read the audit log",
    "audit:Verify": "verify the audit log's hash chain",
    "metrics:Read": "scrape /metrics: every service's Prometheus metrics",
    "server:ReadLogs": "read the control plane's own log (cumulo logs)",
}

SERVICES: frozenset[str] = frozenset(name.split(":", 1)[0] for name in ACTIONS)

RESOURCE_KINDS: tuple[str, ...] = (
    "bucket", "table", "database", "sql", "query", "cluster", "job", "env", "model", "experiment",
    "endpoint", "pipeline", "user", "group", "policy", "project", "token", "audit",
    "backup", "key", "stream", "notebook", "budget", "alert", "monitor",
    "metrics", "server",
)


def resource_kinds() -> tuple[str, ...]:
    """The kinds a resource may start with (the part before its first ``/``)."""
    return RESOURCE_KINDS


def translate(pattern: str) -> str:
    """A wildcard pattern as a regular expression: ``*`` is any run of characters, ``/``
    included, ``?`` one character, and everything else literal. ``fnmatch`` would read ``[``
    as a character class, and ``table/[sales]`` must name that table, not ``table/s``.

    Each run between two stars matches at its leftmost place and the engine never goes back on
    it (an atomic group): right for a glob, since every run has a fixed length, and it keeps a
    pattern like ``*a*a*a*a*b`` quick on a long name instead of trying every split of it."""
    runs = ["".join("." if c == "?" else re.escape(c) for c in run)
            for run in re.split(r"\*+", pattern)]
    if len(runs) == 1:
        return runs[0]
    middle = "".join(f"(?>.*?{run})" for run in runs[1:-1])
    return f"{runs[0]}{middle}.*{runs[-1]}"


@functools.lru_cache(maxsize=4096)
def wildcard(pattern: str) -> re.Pattern[str]:
    """The compiled pattern; use ``.fullmatch``. Case-sensitive, like the names it matches."""
    return re.compile(translate(pattern), re.DOTALL)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the wildcard ``pattern`` as a whole."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    return wildcard(pattern).fullmatch(value) is not None


def known(action_pattern: str) -> bool:
    """Whether the pattern names a registered action: an exact one, ``service:*``, ``*``, or
    any wildcard pattern that matches at least one registered action."""
    if action_pattern in ACTIONS or action_pattern == "*":
        return True
    if "*" not in action_pattern and "?" not in action_pattern:
        return False
    regex = wildcard(action_pattern)
    return any(regex.fullmatch(name) for name in ACTIONS)
