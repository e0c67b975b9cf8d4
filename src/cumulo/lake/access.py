"""Who sees what of a table: grants, column masks and row filters.

**Grants** are a shorthand: ``GRANT SELECT ON sales.orders TO GROUP analysts`` is stored as what
it stands for, a custom policy per privilege and table (``grant.select.sales.orders``, allowing
``tables:Read`` and ``tables:List`` on ``table/sales/orders``) bound to the group, so the policy
simulator, the audit log and ``cumulo access ls`` see it like any other grant. ``REVOKE`` takes
the binding back, and the policy once nobody holds it.

**Column masks** and **row filters** hold for one user or group on one table. A mask replaces a
column's values with an SQL expression over the row (``'***'``, ``left(email, 2) || '***'``); a
filter keeps the rows where its predicate holds. They apply to a caller who is their subject or
in their subject group, admins included: several filters are ANDed, several masks on one column
are applied in turn, in the order they were set. Wherever a table is read (the SQL sandbox, the
read route, jobs reading through it) the table is replaced by :func:`restrict`'s view of it.
Expressions are checked by DuckDB's parser (:func:`cumulo.lake.sqlguard.check_expression`) and
then run once on a row of NULLs of the table's types, so a mask that cannot work is refused
when it is set, not when someone reads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import pyarrow as pa
from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from cumulo.access import directory, grants
from cumulo.access.models import Binding, Group, GroupMember
from cumulo.access.policy import Context, PolicySet, parse_policy
from cumulo.access.roles import role
from cumulo.access.users import user_names
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.lake import catalog, delta, sqlguard
from cumulo.lake.models import ColumnMask, LakeTable, RowFilter
from cumulo.lake.refs import TableRef, validate_name
from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = ["PRIVILEGES", "Command", "Rules", "Subject", "Target", "drop_filter", "drop_mask",
           "grant", "list_filters", "list_masks", "masks_missing", "parse_command",
           "policy_name",
           "read_restricted", "restrict", "restricted", "revoke", "rules_for", "run_command",
           "set_filter", "set_mask", "show_grants"]

SubjectKind = Literal["user", "group"]
# What each privilege of the shorthand allows, on the table (or every table of a database).
PRIVILEGES: dict[str, tuple[str, ...]] = {
    "SELECT": ("tables:Read", "tables:List"),
    "MODIFY": ("tables:Write",),
    "ALL": ("tables:*",),
}
_TRY_S = 5.0  # how long a mask or a filter may take on the one row it is tried on
_SHOWN = {"SELECT": "tables:Read", "MODIFY": "tables:Write", "GRANT": "tables:Grant"}


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    @classmethod
    def of(cls, *, user: str | None, group: str | None) -> Subject:
        if (user is None) == (group is None):
            raise Invalid("name one user or one group (--user or --group)",
                          details={"field": "subject"})
        return cls("user", user) if user is not None else cls("group", group or "")


@dataclass(frozen=True)
class Target:
    """A table, or every table of a database (``table`` None: ``sales.*``)."""

    database: str
    table: str | None

    @property
    def resource(self) -> str:
        return f"table/{self.database}/{self.table or '*'}"

    def __str__(self) -> str:
        return f"{self.database}.{self.table or '*'}"


# --- the SQL shorthand --------------------------------------------------------------------------

_USAGE = {
    "GRANT": "GRANT SELECT|MODIFY|ALL PRIVILEGES ON db.table|db.* TO USER name|GROUP name",
    "REVOKE": "REVOKE SELECT|MODIFY|ALL PRIVILEGES ON db.table|db.* FROM USER name|GROUP name",
    "SHOW": "SHOW GRANTS ON db.table|db.*",
    "ALTER": ("ALTER TABLE db.t ALTER COLUMN c SET MASK expression FOR USER|GROUP name, "
              "ALTER TABLE db.t ALTER COLUMN c DROP MASK FOR USER|GROUP name, "
              "ALTER TABLE db.t SET ROW FILTER predicate FOR USER|GROUP name, or "
              "ALTER TABLE db.t DROP ROW FILTER FOR USER|GROUP name"),
}
_NAME = r'"(?:[^"]|"")+"|[^\s"]+'
_MAYBE = re.compile(r"\b(GRANT|REVOKE|SHOW|ALTER)\b", re.IGNORECASE)
_WORD = re.compile(r'"(?:[^"]|"")+"|,|[^\s,"]+')
_FOR = re.compile(rf"^(?P<body>.*?)\s+FOR\s+(?P<kind>\S+)\s+(?P<name>{_NAME})$",
                  re.IGNORECASE | re.DOTALL)
_ALTER_COLUMN = re.compile(rf"^ALTER\s+TABLE\s+(?P<table>\S+)\s+ALTER\s+COLUMN\s+"
                           rf"(?P<column>{_NAME})\s+(?P<verb>SET|DROP)\s+MASK\b\s*(?P<rest>.*)$",
                           re.IGNORECASE | re.DOTALL)
_ALTER_FILTER = re.compile(r"^ALTER\s+TABLE\s+(?P<table>\S+)\s+(?P<verb>SET|DROP)\s+ROW\s+"
                           r"FILTER\b\s*(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Command:
    """One statement of the shorthand. ``verb``: grant, revoke, show-grants, set-mask,
    drop-mask, set-filter, drop-filter."""

    verb: str
    target: Target
    subject: Subject | None = None
    privileges: tuple[str, ...] = ()
    column: str | None = None
    expression: str | None = None  # the mask, or the row filter's predicate

    @property
    def permission(self) -> tuple[str, str] | None:
        """What the audit log records it as (a read records nothing of its own)."""
        return None if self.verb == "show-grants" else ("tables:Grant", self.target.resource)


def _without_comments(sql: str) -> str:
    """``sql`` with its comments blanked, found by DuckDB's tokenizer (so ``--`` in a string
    stays)."""
    out, last = [], 0
    for position, kind in duckdb.tokenize(sql):
        if kind.name != "comment" or position < last:
            continue
        if sql.startswith("--", position):
            end = sql.find("\n", position)
        else:
            end = sql.find("*/", position)
            end = end + 2 if end >= 0 else -1
        end = len(sql) if end < 0 else end
        out.append(sql[last:position] + " ")
        last = end
    out.append(sql[last:])
    return "".join(out).strip().rstrip(";").strip()


def parse_command(sql: str) -> Command | None:
    """The shorthand statement ``sql`` is (GRANT, REVOKE, SHOW GRANTS, ALTER TABLE ... MASK or
    ROW FILTER), or None for any other statement. Invalid, naming what is wrong and the form
    expected, when it starts like one but is not."""
    if not _MAYBE.search(sql):  # most statements: no tokenizing
        return None
    try:
        text = _without_comments(sql)
    except duckdb.Error:
        return None
    first = text.split(None, 1)[0].upper() if text else ""
    if first in ("GRANT", "REVOKE"):
        return _grant(text, first)
    if first == "SHOW" and re.match(r"^SHOW\s+GRANTS\b", text, re.IGNORECASE):
        words = _Words(text, "SHOW", "SHOW GRANTS")
        words.keyword("SHOW")
        words.keyword("GRANTS")
        words.keyword("ON")
        target = _target(words.table(), "SHOW GRANTS")
        words.end()
        return Command("show-grants", target)
    if first == "ALTER":
        return _alter(text)
    return None


class _Words:
    """The words of a statement, read one at a time, with errors that show the form."""

    def __init__(self, text: str, form: str, statement: str = "") -> None:
        self.words = _WORD.findall(text)
        self.at = 0
        self.form = form  # the key of its usage line
        self.statement = statement or form

    def _wrong(self, message: str) -> Invalid:
        return Invalid(f"{message}; write {_USAGE[self.form]}",
                       details={"statement": self.statement})

    def peek(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def next(self, expected: str) -> str:
        word = self.peek()
        if word is None:
            raise self._wrong(f"{self.statement} ends where {expected} should come")
        self.at += 1
        return word

    def keyword(self, *options: str) -> str:
        word = self.next(" or ".join(options))
        if word.upper() not in options:
            raise self._wrong(f"{self.statement} has {word!r} where {' or '.join(options)} "
                              "should come")
        return word.upper()

    def table(self) -> str:
        word = self.next("a table (db.table or db.*)")
        if word.upper() == "TABLE" and self.peek() is not None:
            word = self.next("a table (db.table or db.*)")
        return word

    def end(self) -> None:
        if self.at < len(self.words):
            raise self._wrong(f"{self.statement} has {' '.join(self.words[self.at:])!r} after "
                              "its end")


def _unquote(word: str) -> str:
    return word[1:-1].replace('""', '"') if word.startswith('"') and len(word) > 1 else word


def _target(word: str, statement: str, *, whole: bool = True) -> Target:
    database, dot, table = word.lower().partition(".")
    if not dot:
        raise Invalid(f"{statement} names {word!r}: write the table as database.table"
                      + (" (or database.* for all its tables)" if whole else ""),
                      details={"table": word})
    validate_name(_unquote(database), "database")
    if table == "*" and whole:
        return Target(_unquote(database), None)
    return Target(_unquote(database), validate_name(_unquote(table), "table"))


def _subject(kind: str, name: str, statement: str) -> Subject:
    if kind.upper() not in ("USER", "GROUP"):
        raise Invalid(f"{statement} gives it to {kind!r}: write USER name or GROUP name; "
                      f"the form is {_USAGE[statement.split()[0]]}",
                      details={"statement": statement})
    return Subject("user" if kind.upper() == "USER" else "group", _unquote(name))


def _grant(text: str, verb: str) -> Command:
    words = _Words(text, verb)
    words.keyword(verb)
    privileges: list[str] = []
    while True:
        word = words.next("a privilege (SELECT, MODIFY or ALL PRIVILEGES)").upper()
        if word not in PRIVILEGES:
            raise words._wrong(f"{verb} knows the privileges SELECT, MODIFY and ALL "
                               f"PRIVILEGES, not {word!r}")
        if word == "ALL" and (words.peek() or "").upper() == "PRIVILEGES":
            words.next("PRIVILEGES")
        privileges.append(word)
        if words.peek() != ",":
            break
        words.next(",")
    words.keyword("ON")
    target = _target(words.table(), verb)
    words.keyword("TO" if verb == "GRANT" else "FROM")
    kind = words.next("USER or GROUP")
    subject = _subject(kind, words.next(f"the {kind.lower()}'s name"), verb)
    words.end()
    return Command(verb.lower(), target, subject, tuple(dict.fromkeys(privileges)))


def _alter(text: str) -> Command:
    column_form = _ALTER_COLUMN.match(text)
    filter_form = _ALTER_FILTER.match(text) if column_form is None else None
    form = column_form or filter_form
    if form is None:
        raise Invalid("Cumulo SQL's ALTER TABLE sets and drops column masks and row filters "
                      f"only: {_USAGE['ALTER']}", details={"statement": "ALTER"})
    what = "MASK" if column_form else "ROW FILTER"
    statement = f"ALTER TABLE ... {form['verb'].upper()} {what}"
    tail = _FOR.match(" " + form["rest"])
    if tail is None:
        raise Invalid(f"{statement} needs FOR USER name or FOR GROUP name at its end; the "
                      f"forms are {_USAGE['ALTER']}", details={"statement": "ALTER"})
    subject = _subject(tail["kind"], tail["name"], "ALTER")
    body = tail["body"].strip()
    verb = form["verb"].lower()
    if verb == "drop" and body:
        raise Invalid(f"{statement} takes nothing between {what} and FOR, not {body!r}",
                      details={"statement": "ALTER"})
    if verb == "set" and not body:
        raise Invalid(f"{statement} needs the {'mask expression' if column_form else 'predicate'}"
                      f" between {what} and FOR, e.g. "
                      + ("SET MASK '***' FOR GROUP analysts" if column_form
                         else "SET ROW FILTER region = 'EU' FOR GROUP analysts"),
                      details={"statement": "ALTER"})
    target = _target(form["table"], "ALTER TABLE", whole=False)
    kind = "mask" if column_form else "filter"
    return Command(f"{verb}-{kind}", target, subject,
                   column=_unquote(form["column"]) if column_form else None,
                   expression=body or None)


def run_command(session: Session, backend: Backend, principal: Principal,
                command: Command) -> pa.Table:
    """Carry out a shorthand statement; what it did, as a small result."""
    target, subject = command.target, command.subject
    if command.verb == "show-grants":
        return _table(show_grants(session, principal, target),
                      ["subject", "privilege", "via"])
    assert subject is not None
    if command.verb in ("grant", "revoke"):
        act = grant if command.verb == "grant" else revoke
        return _table(act(session, principal, list(command.privileges), target, subject),
                      ["done", "privilege", "table", "subject", "policy"])
    ref = TableRef(target.database, target.table or "")
    if command.verb == "set-mask":
        row = set_mask(session, backend, principal, ref, command.column or "",
                       command.expression or "", subject)
        return _table([{"done": "masked", "table": ref.name, "column": row.column,
                        "subject": _label(subject), "mask": row.expression}], [])
    if command.verb == "drop-mask":
        column = drop_mask(session, principal, ref, command.column or "", subject)
        return _table([{"done": "unmasked", "table": ref.name, "column": column,
                        "subject": _label(subject)}], [])
    if command.verb == "set-filter":
        found = set_filter(session, backend, principal, ref, command.expression or "", subject)
        return _table([{"done": "filtered", "table": ref.name, "subject": _label(subject),
                        "row_filter": found.predicate}], [])
    drop_filter(session, principal, ref, subject)
    return _table([{"done": "unfiltered", "table": ref.name, "subject": _label(subject)}], [])


def _table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    names = columns or list(rows[0])
    return pa.table({name: pa.array([str(r.get(name) or "") for r in rows], pa.string())
                     for name in names})


def _label(subject: Subject) -> str:
    return f"{subject.kind}:{subject.name}"


# --- grants -----------------------------------------------------------------------------------


def policy_name(privilege: str, target: Target) -> str:
    """The policy a GRANT of ``privilege`` on ``target`` is stored as: ``grant.select.sales.
    orders``, ``grant.modify.sales.all-tables`` (no table is named with a ``-``)."""
    name = f"grant.{privilege.lower()}.{target.database}.{target.table or 'all-tables'}"
    if len(name) > 64:  # a policy's name is at most 64 characters
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:53]}-{digest}"
    return name


def _document(privilege: str, target: Target) -> dict[str, Any]:
    return {"statements": [{"sid": f"grant-{privilege.lower()}", "effect": "allow",
                            "actions": list(PRIVILEGES[privilege]),
                            "resources": [target.resource]}]}


def _subject_id(session: Session, subject: Subject) -> int:
    if subject.kind == "user":
        return directory.find_user(session, subject.name).id
    return directory.find_group(session, subject.name).id


def _check_target(session: Session, target: Target) -> None:
    if target.table is None:
        catalog.get_database(session, target.database)
    else:
        catalog.get_table(session, TableRef(target.database, target.table))


def _who(subject: Subject) -> dict[str, str | None]:
    """``user=`` and ``group=`` for the access service's functions."""
    return {"user": subject.name if subject.kind == "user" else None,
            "group": subject.name if subject.kind == "group" else None}


def grant(session: Session, principal: Principal, privileges: Sequence[str], target: Target,
          subject: Subject) -> list[dict[str, str]]:
    """``GRANT privileges ON target TO subject``: each privilege's policy, made if missing,
    bound to the subject. Needs tables:Grant on the target, and what binding a policy needs
    (policies:Manage)."""
    principal.require("tables:Grant", target.resource)
    _check_target(session, target)
    _subject_id(session, subject)  # NotFound before anything is made
    done = []
    for privilege in privileges:
        name = policy_name(privilege, target)
        document = parse_policy(_document(privilege, target), name=name).document
        made = False
        try:
            existing = grants.find_policy(session, name)
        except NotFound:
            grants.create_policy(session, principal, name, document,
                                 description=f"GRANT {privilege} ON {target} (SQL shorthand; "
                                 "REVOKE takes it back)")
            made = True
        else:
            if existing.document != document:
                raise Conflict(f"policy {name} exists but is not what GRANT {privilege} ON "
                               f"{target} makes (it was changed); rename or remove it first",
                               details={"policy": name})
        try:
            grants.bind(session, principal, policy=name, user=_who(subject)["user"],
                        group=_who(subject)["group"])
        except BaseException:
            if made:
                session.rollback()
                grants.delete_policy(session, principal, name)
            raise
        done.append({"done": "granted", "privilege": _spoken(privilege), "table": str(target),
                     "subject": _label(subject), "policy": name})
    return done


def _spoken(privilege: str) -> str:
    return "ALL PRIVILEGES" if privilege == "ALL" else privilege


def revoke(session: Session, principal: Principal, privileges: Sequence[str], target: Target,
           subject: Subject) -> list[dict[str, str]]:
    """``REVOKE privileges ON target FROM subject``: the bindings go, and each policy once
    nobody holds it. ``ALL PRIVILEGES`` takes back every privilege GRANT gave on the target."""
    principal.require("tables:Grant", target.resource)
    subject_id = _subject_id(session, subject)
    wanted = list(PRIVILEGES) if "ALL" in privileges else list(privileges)
    done = []
    for privilege in wanted:
        name = policy_name(privilege, target)
        try:
            policy = grants.find_policy(session, name)
        except NotFound:
            policy = None
        held = policy is not None and session.scalar(select(Binding.id).where(
            Binding.policy_id == policy.id, Binding.subject_kind == subject.kind,
            Binding.subject_id == subject_id, Binding.project_id.is_(None))) is not None
        if policy is None or not held:
            if privilege in privileges:  # named, not implied by ALL
                raise NotFound(f"{subject} has no {_spoken(privilege)} on {target} from GRANT "
                               f"(policy {name}); SHOW GRANTS ON {target} lists who has what",
                               details={"policy": name})
            continue
        grants.unbind(session, principal, policy=name, user=_who(subject)["user"],
                      group=_who(subject)["group"])
        left = session.scalar(select(func.count()).select_from(Binding).where(
            Binding.policy_id == policy.id))
        if not left:
            grants.delete_policy(session, principal, name)
        done.append({"done": "revoked", "privilege": _spoken(privilege), "table": str(target),
                     "subject": _label(subject), "policy": name})
    if not done:
        raise NotFound(f"{subject} has no privilege on {target} from GRANT; SHOW GRANTS ON "
                       f"{target} lists who has what")
    return done


def show_grants(session: Session, principal: Principal,
                target: Target) -> list[dict[str, str]]:
    """Who has what on ``target``: every binding whose role or policy allows reading, writing
    or granting it (by itself; a deny elsewhere may still stop someone). Needs policies:List."""
    _check_target(session, target)
    policies = {p.id: p for p in grants.list_policies(session, principal)}
    rows = []
    for binding in grants.bindings(session, principal):
        if binding.role is not None:
            document = role(binding.role)
        elif binding.policy_id in policies:
            policy = policies[binding.policy_id]
            document = parse_policy(policy.document, name=policy.name)
        else:
            continue
        subject = grants.subject_name(session, binding)
        via = grants.describe(session, binding)
        # A project's binding holds in that project: decided as if asked there.
        project = None if binding.project_id is None else str(binding.project_id)
        rules = PolicySet([(via, document, project)])
        context = Context(user=subject.partition(":")[2], project=project)
        allowed = [name for name, action in _SHOWN.items()
                   if rules.decide(action, target.resource, context).allowed]
        if not allowed:
            continue
        every = rules.decide("tables:Drop", target.resource, context).allowed and \
            len(allowed) == len(_SHOWN)
        rows.append({"subject": subject, "privilege": "ALL PRIVILEGES" if every
                     else ", ".join(allowed), "via": via if binding.role is None
                     else f"role {via}"})
    return sorted(rows, key=lambda r: (r["subject"], r["via"]))


# --- masks and filters: setting them ----------------------------------------------------------


def _resource(ref: TableRef) -> str:
    return f"table/{ref.database}/{ref.table}"


def _schema(backend: Backend, table: LakeTable, ref: TableRef) -> pa.Schema:
    """The table's columns and their types, now."""
    if table.kind == "managed":
        loc = catalog.location(backend, table)
        return delta._delta_schema_to_arrow(delta.open_table(loc, name=ref.name))
    fields = []
    for column in table.columns:
        try:
            kind = pa.type_for_alias(str(column.get("type")))
        except ValueError:
            kind = pa.string()
        fields.append(pa.field(str(column["name"]), kind))
    return pa.schema(fields)


def _try(schema: pa.Schema, rules: Rules, what: str, ref: TableRef) -> None:
    """Run ``rules`` once on a row of NULLs of the table's types: what binding refuses
    (an unknown function, a mask of another type than its column) is refused now."""
    con = _connection(memory="256MiB")
    stop = threading.Timer(_TRY_S, con.interrupt)  # one row: any longer is not a mask
    try:
        con.register("__row", pa.table({f.name: pa.nulls(1, f.type) for f in schema},
                                       schema=schema))
        con.execute("SET lock_configuration = true")
        stop.start()
        for predicate in rules.filters:
            kind = con.execute(f"SELECT typeof(({predicate})) FROM __row").fetchone()
            if kind and kind[0] not in ("BOOLEAN", '"NULL"'):
                raise Invalid(f"{what} must be a condition (true or false), not a {kind[0]} "
                              "value: e.g. region = 'EU'", details={"expression": predicate})
        con.execute(restrict("SELECT * FROM __row", rules, schema.names)).fetchall()
    except duckdb.Error as exc:
        reason = str(exc).split("\n", 1)[0].split(": ", 1)[-1]
        if isinstance(exc, duckdb.InterruptException):
            reason = f"it took over {_TRY_S:.0f} s on one row"
        hint = ""
        if "Cannot mix values" in reason or "Could not convert" in reason:
            hint = ("; a mask gives its column's type: write NULL, a value of that type, or "
                    "CAST(... AS type)")
        raise Invalid(f"{what} does not work on {ref.name}: {reason}{hint}",
                      details={"table": ref.name}) from exc
    finally:
        stop.cancel()
        con.close()


def _connection(*, memory: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can open no file: it reads only what is registered on it.
    ``memory``: a small limit, and one thread (for trying an expression on one row)."""
    small: dict[str, str | int] = {"memory_limit": memory, "threads": 1} if memory else {}
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "python_enable_replacements": False, **small})
    con.execute("SET enable_external_access = false")
    return con


def set_mask(session: Session, backend: Backend, principal: Principal, ref: TableRef,
             column: str, expression: str, subject: Subject) -> ColumnMask:
    """Make ``subject`` see ``expression`` instead of ``column``'s values (replacing the mask
    they had on it). Needs tables:Grant on the table."""
    principal.require("tables:Grant", _resource(ref))
    table = catalog.get_table(session, ref)
    schema = _schema(backend, table, ref)
    actual = {name.lower(): name for name in schema.names}.get(column.lower())
    if actual is None:
        raise Invalid(f"{ref.name} has no column {column!r}; its columns: "
                      f"{', '.join(schema.names)}", details={"column": column})
    what = f"the mask on {ref.name}.{actual}"
    canonical = sqlguard.check_expression(expression, columns=schema.names, what=what)
    _try(schema, Rules(masks=((actual, canonical),)), what, ref)
    subject_id = _subject_id(session, subject)
    row = session.scalar(select(ColumnMask).where(
        ColumnMask.table_id == table.id, ColumnMask.column == actual,
        ColumnMask.subject_kind == subject.kind, ColumnMask.subject_id == subject_id))
    if row is None:
        row = ColumnMask(table_id=table.id, column=actual, subject_kind=subject.kind,
                         subject_id=subject_id, created_by=principal.user_id)
        session.add(row)
    row.expression = canonical
    row.created_at = utcnow()
    session.commit()
    return row


def drop_mask(session: Session, principal: Principal, ref: TableRef, column: str,
              subject: Subject) -> str:
    """Take ``subject``'s mask on ``column`` away; the column's name."""
    principal.require("tables:Grant", _resource(ref))
    table = catalog.get_table(session, ref)
    subject_id = _subject_id(session, subject)
    rows = [row for row in session.scalars(select(ColumnMask).where(
        ColumnMask.table_id == table.id, ColumnMask.subject_kind == subject.kind,
        ColumnMask.subject_id == subject_id)) if row.column.lower() == column.lower()]
    if not rows:
        raise NotFound(f"{subject} has no mask on {ref.name}.{column}; 'cumulo tables policies "
                       f"{ref.name}' lists them", details={"column": column})
    session.delete(rows[0])
    session.commit()
    return rows[0].column


def set_filter(session: Session, backend: Backend, principal: Principal, ref: TableRef,
               predicate: str, subject: Subject) -> RowFilter:
    """Make ``subject`` see only the rows where ``predicate`` holds (replacing the filter they
    had). Needs tables:Grant on the table."""
    principal.require("tables:Grant", _resource(ref))
    table = catalog.get_table(session, ref)
    schema = _schema(backend, table, ref)
    what = f"the row filter on {ref.name}"
    canonical = sqlguard.check_expression(predicate, columns=schema.names, what=what)
    _try(schema, Rules(filters=(canonical,)), what, ref)
    subject_id = _subject_id(session, subject)
    row = session.scalar(select(RowFilter).where(
        RowFilter.table_id == table.id, RowFilter.subject_kind == subject.kind,
        RowFilter.subject_id == subject_id))
    if row is None:
        row = RowFilter(table_id=table.id, subject_kind=subject.kind, subject_id=subject_id,
                        created_by=principal.user_id)
        session.add(row)
    row.predicate = canonical
    row.created_at = utcnow()
    session.commit()
    return row


def drop_filter(session: Session, principal: Principal, ref: TableRef,
                subject: Subject) -> None:
    principal.require("tables:Grant", _resource(ref))
    table = catalog.get_table(session, ref)
    subject_id = _subject_id(session, subject)
    row = session.scalar(select(RowFilter).where(
        RowFilter.table_id == table.id, RowFilter.subject_kind == subject.kind,
        RowFilter.subject_id == subject_id))
    if row is None:
        raise NotFound(f"{subject} has no row filter on {ref.name}; 'cumulo tables policies "
                       f"{ref.name}' lists them")
    session.delete(row)
    session.commit()


def _subjects(session: Session, rows: Sequence[ColumnMask | RowFilter]) -> dict[
        tuple[str, int], str]:
    users = user_names(session, {r.subject_id for r in rows if r.subject_kind == "user"})
    wanted = {r.subject_id for r in rows if r.subject_kind == "group"}
    groups = dict(session.execute(select(Group.id, Group.name).where(
        Group.id.in_(wanted or [-1]))).all())
    names = {("user", i): n for i, n in users.items() if i is not None}
    names.update({("group", i): n for i, n in groups.items()})
    return {key: f"{key[0]}:{names.get(key, key[1])}" for key in
            {(r.subject_kind, r.subject_id) for r in rows}}


def _described(session: Session, rows: Sequence[ColumnMask | RowFilter]) -> Iterator[
        tuple[ColumnMask | RowFilter, dict[str, Any]]]:
    subjects = _subjects(session, rows)
    creators = user_names(session, {r.created_by for r in rows})
    for row in rows:
        yield row, {"subject": subjects[(row.subject_kind, row.subject_id)],
                    "created_by": creators.get(row.created_by), "created_at": row.created_at}


def list_masks(session: Session, principal: Principal, ref: TableRef) -> list[dict[str, Any]]:
    """The table's masks: column, expression, subject (``group:analysts``), who set it, when."""
    principal.require("tables:Read", _resource(ref))
    table = catalog.get_table(session, ref)
    rows = list(session.scalars(select(ColumnMask).where(ColumnMask.table_id == table.id)
                                .order_by(ColumnMask.column, ColumnMask.id)))
    return [{"table": ref.name, "column": row.column, "expression": row.expression, **info}
            for row, info in _described(session, rows) if isinstance(row, ColumnMask)]


def list_filters(session: Session, principal: Principal,
                 ref: TableRef) -> list[dict[str, Any]]:
    """The table's row filters: predicate, subject, who set it, when."""
    principal.require("tables:Read", _resource(ref))
    table = catalog.get_table(session, ref)
    rows = list(session.scalars(select(RowFilter).where(RowFilter.table_id == table.id)
                                .order_by(RowFilter.id)))
    return [{"table": ref.name, "predicate": row.predicate, **info}
            for row, info in _described(session, rows) if isinstance(row, RowFilter)]


# --- masks and filters: applying them -----------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The masks and filters that hold for one caller on one table, in the order they were
    set. Empty (false) for most callers."""

    masks: tuple[tuple[str, str], ...] = ()  # (column, expression)
    filters: tuple[str, ...] = ()
    # The table's columns now (the masks name these): a version read from before a column was
    # renamed holds it under its old name, which no mask names.
    current: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.masks or self.filters)


def rules_for(session: Session, user_id: int, table_ids: Collection[int]) -> dict[int, Rules]:
    """The rules that hold for a user on each of the tables (those with none are left out):
    one indexed query over masks and filters together, whatever the number of tables."""
    ids = sorted(set(table_ids))
    if not ids:
        return {}
    groups = select(GroupMember.group_id).where(GroupMember.user_id == user_id)

    def theirs(model: type[ColumnMask] | type[RowFilter]) -> Any:
        return and_(model.table_id.in_(ids), or_(
            and_(model.subject_kind == "user", model.subject_id == user_id),
            and_(model.subject_kind == "group", model.subject_id.in_(groups))))

    masks = select(ColumnMask.table_id, literal("mask").label("kind"),
                   ColumnMask.column.label("column"), ColumnMask.expression.label("text"),
                   ColumnMask.id).where(theirs(ColumnMask))
    filters = select(RowFilter.table_id, literal("filter").label("kind"),
                     literal("").label("column"), RowFilter.predicate.label("text"),
                     RowFilter.id).where(theirs(RowFilter))
    found: dict[int, tuple[list[tuple[str, str]], list[str]]] = {}
    for table_id, kind, column, text, _ in sorted(
            session.execute(union_all(masks, filters)).all(),
            key=lambda row: (row[1], row[4])):
        mine = found.setdefault(table_id, ([], []))
        if kind == "mask":
            mine[0].append((column, text))
        else:
            mine[1].append(text)
    masked = [table_id for table_id, (m, _) in found.items() if m]
    # An external table's columns are in the catalog; a managed table's are its Delta log's
    # (:func:`masks_missing`, read only when a version lacks a masked column).
    current = {table_id: tuple(str(c.get("name", "")) for c in columns)
               for table_id, columns in session.execute(
                   select(LakeTable.id, LakeTable.columns).where(LakeTable.id.in_(masked)))
               if columns} if masked else {}
    return {table_id: Rules(tuple(m), tuple(f), current.get(table_id))
            for table_id, (m, f) in found.items()}


def masks_missing(rules: Rules | None, columns: Sequence[str]) -> bool:
    """Whether a version with ``columns`` lacks a column a mask names, while the table's
    columns now are not known: give them (``dataclasses.replace(rules, current=...)``) before
    :func:`restrict`, or every column the version has is shown NULL."""
    if not rules or rules.current is not None:
        return False
    have = {c.lower() for c in columns}
    return any(column.lower() not in have for column, _ in rules.masks)


def restricted(session: Session, user_id: int, table_id: int) -> bool:
    """Whether masks or row filters hold for the user on the table: then they must read it
    through the lake (the read route, SQL), never from its files (a job on a local cluster)."""
    return bool(rules_for(session, user_id, [table_id]).get(table_id))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def restrict(body: str, rules: Rules, columns: Sequence[str] | None = None) -> str:
    """``body`` (a SELECT of a table's rows) as ``rules`` let the caller see it: the rows its
    filters keep (tested on the stored values), masked; masks on one column apply in turn.
    With ``columns`` (the table's, at the version read), a mask on a column the
    version lacks is left out; without, every mask applies (a missing column fails the query:
    nothing is shown unmasked). A masked column the version lacks may be there under an older
    name (renamed since): then every column of the version that the table no longer has is
    shown as NULL, since any of them may be it."""
    if not rules:
        return body
    where = " WHERE " + " AND ".join(f"({p})" for p in rules.filters) if rules.filters else ""
    present = None if columns is None else {c.lower(): c for c in columns}
    masks = list(rules.masks)
    if present is not None and any(c.lower() not in present for c, _ in masks):
        now = None if rules.current is None else {c.lower() for c in rules.current}
        masks += [(column, "NULL") for key, column in present.items()
                  if now is None or key not in now]
    layers: list[dict[str, tuple[str, str]]] = []
    for column, expression in masks:
        key = column.lower()
        if present is not None:
            if key not in present:
                continue
            column = present[key]
        for layer in layers:
            if key not in layer:
                layer[key] = (column, expression)
                break
        else:
            layers.append({key: (column, expression)})
    # One SELECT when each column has one mask (the filters, in its WHERE, test the stored
    # values: WHERE sees the FROM's columns, not the masked ones); a layer more per mask more.
    sql = f"SELECT *{_replace(layers[0]) if layers else ''} FROM ({body}) AS __rows{where}"
    for depth, layer in enumerate(layers[1:]):
        sql = f"SELECT *{_replace(layer)} FROM ({sql}) AS __masked_{depth}"
    return sql


def _replace(layer: dict[str, tuple[str, str]]) -> str:
    # CASE WHEN false THEN col ...: the mask takes the column's type where it can (NULL
    # becomes a NULL of that type); the column's own value is never chosen.
    return " REPLACE (" + ", ".join(
        f"CASE WHEN false THEN {_quote(c)} ELSE ({e}) END AS {_quote(c)}"
        for c, e in layer.values()) + ")"


def read_restricted(dataset: Any, rules: Rules, columns: Sequence[str], *,
                    batch_size: int = 65536) -> pa.RecordBatchReader:
    """A table's rows (an Arrow dataset, at the version read) as ``rules`` let the caller see
    them, streamed: what the read route serves to a caller with masks or filters."""
    con = _connection()
    try:
        con.register("__table", dataset)
        con.execute("SET lock_configuration = true")
        reader = con.sql(restrict("SELECT * FROM __table", rules, columns)) \
            .to_arrow_reader(batch_size)
    except BaseException:
        con.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        finally:
            con.close()

    return pa.RecordBatchReader.from_batches(reader.schema, batches())

