"""Policy documents, parsed strictly, and the decision IAM's way.

A policy is a list of statements; each allows or denies some actions on some resources, maybe
only under conditions (the caller's address, the time, owning the resource)::

    {"statements": [
      {"sid": "read-sales", "effect": "allow", "actions": ["tables:Read", "tables:List"],
       "resources": ["table/sales/*"], "conditions": {"source_ip": ["10.0.0.0/8"]}}]}

``parse_policy`` refuses anything it does not understand, naming the statement and field, since
a misspelled action or condition would otherwise grant or deny nothing without a word.
``PolicySet`` holds every policy that bears on a caller (their roles, their groups', their
projects') and ``decide`` answers one request: an explicit deny that applies wins, else an
allow that applies, else the implicit deny. Nothing here touches a database or the network.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cumulo.access.actions import ACTIONS, RESOURCE_KINDS, SERVICES, known, wildcard
from cumulo.errors import Invalid, TooLarge

__all__ = [
    "MAX_ACTIONS",
    "MAX_DOCUMENT_BYTES",
    "MAX_RESOURCES",
    "MAX_STATEMENTS",
    "Conditions",
    "Context",
    "Decision",
    "Policy",
    "PolicySet",
    "Statement",
    "parse_policy",
]

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_STATEMENTS = 100
MAX_ACTIONS = 100
MAX_RESOURCES = 100
_MAX_NETWORKS = 100
_MAX_SID = 128

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_STATEMENT_KEYS = ("sid", "effect", "actions", "resources", "conditions")
_CONDITION_KEYS = ("source_ip", "not_source_ip", "after", "before", "hours_utc", "weekdays",
                   "owner")
_HOURS = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Context:
    """What a decision may depend on besides the action and the resource. ``owner`` and
    ``project`` are the resource's, when the caller of ``decide`` knows them."""

    user: str
    source_ip: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    owner: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        # Hours and weekdays are read in UTC; a naive time is taken to be UTC already.
        now = self.now.replace(tzinfo=UTC) if self.now.tzinfo is None else self.now.astimezone(UTC)
        object.__setattr__(self, "now", now)

    @cached_property
    def address(self) -> Address | None:
        """The source address, or None when there is none or it does not parse; an IPv4 address
        seen through an IPv6 socket (``::ffff:10.1.2.3``) counts as the IPv4 one."""
        if not self.source_ip:
            return None
        try:
            address = ipaddress.ip_address(self.source_ip.strip())
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address


@dataclass(frozen=True)
class Conditions:
    """The conditions of one statement; every one present must hold for it to apply."""

    source_ip: tuple[Network, ...] | None = None
    not_source_ip: tuple[Network, ...] | None = None
    after: datetime | None = None
    before: datetime | None = None
    hours_utc: tuple[int, int] | None = None  # minutes since midnight: [start, end)
    weekdays: frozenset[int] | None = None  # 0 is Monday, as datetime.weekday()
    owner_self: bool = False

    def hold(self, context: Context) -> bool:
        if self.source_ip is not None:
            address = context.address
            if address is None or not any(address in net for net in self.source_ip):
                return False
        if self.not_source_ip is not None:
            address = context.address
            if address is not None and any(address in net for net in self.not_source_ip):
                return False
        now = context.now
        if self.after is not None and now < self.after:
            return False
        if self.before is not None and now >= self.before:
            return False
        if self.hours_utc is not None:
            start, end = self.hours_utc
            minute = now.hour * 60 + now.minute
            inside = start <= minute < end if start < end else (minute >= start or minute < end)
            if not inside:
                return False
        if self.weekdays is not None and now.weekday() not in self.weekdays:
            return False
        return not self.owner_self or (context.owner is not None and context.owner == context.user)


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based, as messages and decisions count
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str | None = None
    conditions: Conditions | None = None

    @property
    def label(self) -> str:
        return f"statement {self.index}" + (f" ({self.sid})" if self.sid else "")


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``text`` is the document as compact JSON, kept to show it back."""

    name: str
    statements: tuple[Statement, ...]
    text: str = field(default="", compare=False, repr=False)

    @property
    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.text) if self.text else {"statements": []}
        return document


@dataclass(frozen=True)
class Decision:
    """The answer to one request, and which statement of which policy gave it. ``effect`` and
    ``source`` are None for the implicit deny (nothing allowed it)."""

    allowed: bool
    effect: str | None = None
    source: str | None = None
    statement: int | None = None
    sid: str | None = None
    action: str = ""
    resource: str = ""

    @property
    def reason(self) -> str:
        if self.effect is None:
            return f"no statement allows {self.action} on {self.resource}"
        label = f"statement {self.statement}" + (f" ({self.sid})" if self.sid else "")
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by {label} of {self.source}"

    def __str__(self) -> str:
        return self.reason


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    policy: str
    index: int | None = None
    sid: str | None = None

    def error(self, field: str | None, message: str, *, cls: type[Invalid] = Invalid) -> Invalid:
        parts = []
        if self.policy:
            parts.append(f"policy {self.policy!r}")
        if self.index is not None:
            parts.append(f"statement {self.index}" + (f" ({self.sid!r})" if self.sid else ""))
        if field:
            parts.append(f"field {field!r}")
        where = ", ".join(parts)
        details: dict[str, Any] = {"statement": self.index, "field": field}
        if self.policy:
            details["policy"] = self.policy
        return cls(f"{where}: {message}" if where else message, details=details)


def _kind(value: object) -> str:
    """How JSON would name the value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_policy(document: object, *, name: str = "") -> Policy:
    """The policy in ``document`` (a dict as from JSON, or JSON text), checked strictly; raises
    ``Invalid`` naming the statement and field at fault (``details`` has them too), and
    ``TooLarge`` over 64 KiB."""
    where = _Where(name)
    document, text = _load(document, where)
    if not isinstance(document, dict):
        raise where.error(None, 'a policy must be a JSON object like {"statements": [...]}, '
                                f"not {_kind(document)}")
    for key in document:
        if key != "statements":
            raise where.error(str(key), "unknown key; a policy document has only 'statements'")
    raw = document.get("statements")
    if raw is None:
        raise where.error("statements", 'missing: give a list of statements, e.g. [{"effect": '
                                        '"allow", "actions": [...], "resources": [...]}]')
    if not isinstance(raw, list):
        raise where.error("statements", f"must be a list of statements, not {_kind(raw)}")
    if not raw:
        raise where.error("statements", "is empty: give at least one statement")
    if len(raw) > MAX_STATEMENTS:
        raise where.error("statements", f"has {len(raw)} statements; at most {MAX_STATEMENTS} "
                                        "are allowed: split it into several policies")
    statements = tuple(_statement(item, i, name) for i, item in enumerate(raw, 1))
    return Policy(name, statements, text)


def _load(document: object, where: _Where) -> tuple[object, str]:
    """The document and its compact JSON text, refusing it over the size limit."""
    if isinstance(document, bytes | bytearray):
        try:
            document = bytes(document).decode("utf-8")
        except UnicodeDecodeError:
            raise where.error(None, "the policy is not UTF-8 text") from None
    if isinstance(document, str):
        _check_size(len(document.encode("utf-8")), where)
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise where.error(None, f"the policy is not valid JSON: {exc}") from None
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise where.error(None, f"the policy is not a JSON document: {exc}") from None
    _check_size(len(text.encode("utf-8")), where)
    return document, text


def _check_size(size: int, where: _Where) -> None:
    if size > MAX_DOCUMENT_BYTES:
        raise where.error(None, f"the document is {size} bytes; a policy may be at most "
                                f"{MAX_DOCUMENT_BYTES // 1024} KiB: split it into several "
                                "policies or use wildcards", cls=TooLarge)


def _statement(raw: object, index: int, policy: str) -> Statement:
    where = _Where(policy, index)
    if not isinstance(raw, dict):
        raise where.error(None, "a statement must be an object with 'effect', 'actions' and "
                                f"'resources', not {_kind(raw)}")
    sid = raw.get("sid")
    if sid is not None:
        if not isinstance(sid, str) or not sid.strip() or len(sid) > _MAX_SID:
            raise where.error("sid", "must be a short label: a non-empty string of at most "
                                     f"{_MAX_SID} characters")
        where = _Where(policy, index, sid)
    for key in raw:
        if key not in _STATEMENT_KEYS:
            hint = _suggest(str(key), _STATEMENT_KEYS)
            raise where.error(str(key), f"unknown key; a statement has "
                                        f"{', '.join(_STATEMENT_KEYS)}{hint}")
    effect = raw.get("effect")
    if effect not in ("allow", "deny"):
        said = "missing" if effect is None else f"{effect!r} is not an effect"
        hint = "; write it in lower case" if str(effect).lower() in ("allow", "deny") else ""
        raise where.error("effect", f"{said}: give 'allow' or 'deny'{hint}")
    actions = _strings(raw, "actions", MAX_ACTIONS, where, example="tables:Read")
    for i, action in enumerate(actions, 1):
        if not known(action):
            choices = [*ACTIONS, *(f"{service}:*" for service in SERVICES)]
            hint = _suggest(action, choices) or (
                "; an action is service:Verb such as 'tables:Read', or a pattern such as "
                "'tables:*'")
            raise where.error("actions", f"item {i}, {action!r}, matches no action{hint}")
    resources = _strings(raw, "resources", MAX_RESOURCES, where, example="table/sales/*")
    for i, resource in enumerate(resources, 1):
        _check_resource(resource, i, where)
    conditions = _conditions(raw["conditions"], where) if "conditions" in raw else None
    return Statement(index, str(effect), tuple(actions), tuple(resources), sid, conditions)


def _strings(raw: dict[str, Any], key: str, limit: int, where: _Where, *,
             example: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        raise where.error(key, f"missing: give a list such as [{example!r}] or ['*']")
    if not isinstance(value, list):
        hint = f"; write [{value!r}]" if isinstance(value, str) else ""
        raise where.error(key, f"must be a list of strings, not {_kind(value)}{hint}")
    if not value:
        raise where.error(key, f"is empty: give at least one, such as [{example!r}]")
    if len(value) > limit:
        raise where.error(key, f"has {len(value)} items; at most {limit} are allowed: use "
                               "wildcards or split the statement")
    for i, item in enumerate(value, 1):
        if not isinstance(item, str) or not item:
            raise where.error(key, f"item {i} must be a non-empty string, not {_kind(item)}")
    return value


def _check_resource(resource: str, i: int, where: _Where) -> None:
    if resource == "*":
        return
    kind = resource.split("/", 1)[0]
    if "*" in kind or "?" in kind:
        regex = wildcard(kind)
        if any(regex.fullmatch(k) for k in RESOURCE_KINDS):
            return
    elif kind in RESOURCE_KINDS:
        return
    hint = _suggest(kind, RESOURCE_KINDS) or f"; use one of {', '.join(RESOURCE_KINDS)}, or '*'"
    raise where.error("resources", f"item {i}, {resource!r}, is of kind {kind!r}, which is not a "
                                   f"kind of resource{hint}")


def _conditions(raw: object, where: _Where) -> Conditions | None:
    if not isinstance(raw, dict):
        raise where.error("conditions", 'must be an object such as {"source_ip": ["10.0.0.0/8"]}, '
                                        f"not {_kind(raw)}")
    for key in raw:
        if key not in _CONDITION_KEYS:
            raise where.error(f"conditions.{key}", "unknown condition; use "
                              f"{', '.join(_CONDITION_KEYS)}{_suggest(str(key), _CONDITION_KEYS)}")
    if not raw:
        return None
    after = _time(raw, "after", where)
    before = _time(raw, "before", where)
    if after is not None and before is not None and after >= before:
        raise where.error("conditions.before", "is not later than 'after', so the statement "
                                               "could never apply")
    owner = raw.get("owner")
    if "owner" in raw and owner != "self":
        raise where.error("conditions.owner", f"{owner!r} is not supported: the only value is "
                                              "'self' (the caller owns the resource)")
    return Conditions(source_ip=_networks(raw, "source_ip", where),
                      not_source_ip=_networks(raw, "not_source_ip", where),
                      after=after, before=before, hours_utc=_hours(raw, where),
                      weekdays=_weekdays(raw, where), owner_self="owner" in raw)


def _list(raw: dict[str, Any], key: str, where: _Where, example: str) -> list[Any]:
    value = raw[key]
    if not isinstance(value, list):
        hint = f"; write [{value!r}]" if isinstance(value, str) else ""
        raise where.error(f"conditions.{key}", f"must be a list such as [{example!r}], not "
                                               f"{_kind(value)}{hint}")
    if not value:
        raise where.error(f"conditions.{key}", f"is empty: give at least one, such as "
                                               f"[{example!r}], or remove the condition")
    return value


def _networks(raw: dict[str, Any], key: str, where: _Where) -> tuple[Network, ...] | None:
    if key not in raw:
        return None
    items = _list(raw, key, where, "10.0.0.0/8")
    if len(items) > _MAX_NETWORKS:
        raise where.error(f"conditions.{key}", f"has {len(items)} networks; at most "
                                               f"{_MAX_NETWORKS} are allowed")
    networks = []
    for i, item in enumerate(items, 1):
        try:
            # strict=False: '10.1.2.3/8' means the network it lies in, as other clouds read it
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except (ValueError, TypeError, AttributeError):
            raise where.error(f"conditions.{key}", f"item {i}, {item!r}, is not an IP address or "
                                                   "network such as '10.0.0.0/8', '127.0.0.1' or "
                                                   "'2001:db8::/32'") from None
    return tuple(networks)


def _time(raw: dict[str, Any], key: str, where: _Where) -> datetime | None:
    if key not in raw:
        return None
    value = raw[key]
    try:
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        raise where.error(f"conditions.{key}", f"{value!r} is not a date and time; write ISO "
                                               "8601 such as '2026-01-01T00:00:00Z'") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hours(raw: dict[str, Any], where: _Where) -> tuple[int, int] | None:
    if "hours_utc" not in raw:
        return None
    value = raw["hours_utc"]
    match = _HOURS.fullmatch(value) if isinstance(value, str) else None
    if match:
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 < 24 and m1 < 60 and m2 < 60 and (h2 < 24 or end == 24 * 60) and start != end:
            return start, end
    raise where.error("conditions.hours_utc", f"{value!r} is not a window of hours: write "
                                              "'HH:MM-HH:MM' in UTC with different ends, such as "
                                              "'09:00-18:00' or '22:00-06:00'")


def _weekdays(raw: dict[str, Any], where: _Where) -> frozenset[int] | None:
    if "weekdays" not in raw:
        return None
    days = set()
    for i, item in enumerate(_list(raw, "weekdays", where, "mon"), 1):
        day = item.strip().lower() if isinstance(item, str) else None
        if day not in WEEKDAYS:
            hint = _suggest(str(item).lower(), WEEKDAYS) if isinstance(item, str) else ""
            raise where.error("conditions.weekdays", f"item {i}, {item!r}, is not a weekday; "
                                                     f"use {', '.join(WEEKDAYS)}{hint}")
        days.add(WEEKDAYS.index(day))
    return frozenset(days)


# -- deciding --------------------------------------------------------------------------------


def _is_pattern(text: str) -> bool:
    return "*" in text or "?" in text


@dataclass(frozen=True, slots=True)
class _Entry:
    order: int  # place among every statement of the set, for "the first allow"
    label: str
    project: str | None
    statement: Statement
    deny: bool

    def decision(self, action: str, resource: str) -> Decision:
        return Decision(not self.deny, self.statement.effect, self.label, self.statement.index,
                        self.statement.sid, action, resource)


class _Index:
    """The statements about one action, found by resource: exact names in a dict, patterns
    that are a literal prefix and one final ``*`` by prefix (a lookup per prefix length of
    the resource), and any other pattern by its compiled regex."""

    __slots__ = ("exact", "lengths", "patterns", "prefixes")

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self.exact: dict[str, list[_Entry]] = {}
        self.prefixes: dict[str, list[_Entry]] = {}
        self.patterns: list[tuple[re.Pattern[str], _Entry]] = []
        unique = sorted({entry.order: entry for entry in entries}.values(), key=_order)
        for entry in unique:
            for resource in dict.fromkeys(entry.statement.resources):
                if not _is_pattern(resource):
                    self.exact.setdefault(resource, []).append(entry)
                elif resource.endswith("*") and not _is_pattern(resource.rstrip("*")):
                    self.prefixes.setdefault(resource.rstrip("*"), []).append(entry)
                else:
                    self.patterns.append((wildcard(resource), entry))
        self.lengths = sorted({len(prefix) for prefix in self.prefixes})

    def lookup(self, resource: str) -> list[_Entry]:
        """The statements whose resources match, in the set's order."""
        found: list[_Entry] = []
        sources = 0
        hit = self.exact.get(resource)
        if hit:
            found += hit
            sources += 1
        size = len(resource)
        for length in self.lengths:
            if length > size:
                break
            hit = self.prefixes.get(resource[:length])
            if hit:
                found += hit
                sources += 1
        for regex, entry in self.patterns:
            if regex.fullmatch(resource):
                found.append(entry)
                sources += 1
        if sources > 1:  # two routes may find one statement, and each list is in order
            found = sorted({entry.order: entry for entry in found}.values(), key=_order)
        return found


def _order(entry: _Entry) -> int:
    return entry.order


class PolicySet:
    """Every policy that bears on one caller, ready to decide requests.

    ``entries`` are ``(label, policy, project)``: the label names the policy's source in
    decisions ("role developer", "policy sales-read"); a statement of an entry with a project
    applies only to resources of that project. Statements are grouped by action once here and
    by resource the first time each action is asked about, so a decision looks at the few
    statements that can matter, not at all of them.
    """

    def __init__(self, entries: Iterable[tuple[str, Policy, str | None]] = ()) -> None:
        self._exact: dict[str, list[_Entry]] = {}
        by_pattern: dict[str, list[_Entry]] = {}
        order = 0
        self.projects: set[str] = set()  # the projects some statement holds in only
        for label, policy, project in entries:
            if project is not None:
                self.projects.add(project)
            for statement in policy.statements:
                entry = _Entry(order, label, project, statement, statement.effect == "deny")
                order += 1
                for action in dict.fromkeys(statement.actions):
                    group = by_pattern if _is_pattern(action) else self._exact
                    group.setdefault(action, []).append(entry)
        self._patterns = [(wildcard(p), group) for p, group in by_pattern.items()]
        self._indexes: dict[str, _Index] = {}
        self.statements = order

    @property
    def in_projects(self) -> bool:
        """Whether some statement holds only in one project."""
        return bool(self.projects)

    def _index(self, action: str) -> _Index:
        index = self._indexes.get(action)
        if index is None:
            entries = list(self._exact.get(action, ()))
            for regex, group in self._patterns:
                if regex.fullmatch(action):
                    entries += group
            index = _Index(entries)
            if action in ACTIONS:  # only registered names, so callers cannot grow the cache
                self._indexes[action] = index
        return index

    def decide(self, action: str, resource: str, context: Context) -> Decision:
        """Whether ``context.user`` may do ``action`` on ``resource``: a deny that applies wins
        wherever it is, else the first allow that applies, else the implicit deny."""
        allow: _Entry | None = None
        for entry in self._index(action).lookup(resource):
            if allow is not None and not entry.deny:
                continue
            if entry.project is not None and entry.project != context.project:
                continue
            conditions = entry.statement.conditions
            if conditions is not None and not conditions.hold(context):
                continue
            if entry.deny:
                return entry.decision(action, resource)
            allow = entry
        if allow is not None:
            return allow.decision(action, resource)
        return Decision(False, action=action, resource=resource)

    def actions_allowed(self, resource: str, context: Context,
                        actions: Sequence[str] | None = None) -> set[str]:
        """Which of ``actions`` (every registered one by default) would be allowed on
        ``resource``: what the console asks to know which buttons to show."""
        names = ACTIONS if actions is None else actions
        return {name for name in names if self.decide(name, resource, context).allowed}
