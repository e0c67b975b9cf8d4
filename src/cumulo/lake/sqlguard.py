"""What a SQL statement may name, told from DuckDB's own parse tree before anything runs.

The sealed database (``sql._Sandbox``) stops a query that opens a file it may not, but only
once DuckDB binds the query, and binding already does work: a table function's arguments are
evaluated, ``read_json_auto`` lists a glob and samples a file. Binding anywhere but in the
sealed database (``duckdb.get_table_names`` binds on the process's default connection, which
can open any file) told a user which folders and files exist and read ``/dev/zero`` for
gigabytes. So a statement is first parsed here, on a connection that can open nothing, with
``json_serialize_sql`` (parsing only: nothing is bound, nothing evaluated), and refused when
its tree names anything but lake tables (``db.t``), its own CTEs, and table functions that
make rows from values (``range``, ``unnest``...). The same refusal comes whether a named file
exists or not, since no file is looked at.

Settings (``current_setting``, ``duckdb_settings()``, ``SHOW``, ``pg_settings``) are refused
too: they hold the server's absolute paths.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb
import orjson

from cumulo.errors import Invalid, NotFound

__all__ = ["REFUSED_FUNCTIONS", "TABLE_FUNCTIONS", "Names", "check", "table_names"]

# Table functions that make rows from their arguments alone: no file, no catalog, no setting.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree",
                             "repeat", "repeat_row"})

# Scalar functions that show the server's settings or hold a connection without working.
REFUSED_FUNCTIONS = {
    "current_setting": "it shows the server's settings, which hold its paths",
    "getenv": "it shows the server's environment",
    "getvariable": "it shows the server's variables",
    "write_log": "it writes to the server's log",
    "sleep_ms": "it holds a connection without working",
    "pg_sleep": "it holds a connection without working",
}

# DESCRIBE and SUMMARIZE wrap a query (checked like any other); SHOW x shows a setting or the
# sealed database's own catalog.
_SHOWN = frozenset({"DESCRIBE", "SUMMARY"})
_LAKE = "Cumulo SQL reads only lake tables, named database.table"

_PARSER_LOCK = threading.Lock()


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    """A connection that can open no file and change no setting: it only parses."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "python_enable_replacements": False,
                                 "threads": 1, "memory_limit": "256MiB"})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


@cache
def _system_names() -> frozenset[str]:
    """Names that DuckDB resolves without a schema to its own catalog views (duckdb_views,
    pg_settings...): a query may not reach them through an unqualified name."""
    with _PARSER_LOCK:
        rows = _parser().execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'system' "
            "AND schema_name IN ('main', 'pg_catalog') UNION "
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'system'").fetchall()
    return frozenset(name.lower() for (name,) in rows)


def _tree(sql: str) -> dict[str, Any]:
    with _PARSER_LOCK:
        row = _parser().execute("SELECT json_serialize_sql($1::VARCHAR)", [sql]).fetchone()
    tree: dict[str, Any] = orjson.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        reason = str(tree.get("error_message") or "it cannot be parsed")
        raise Invalid(f"Cumulo SQL cannot check this statement ({reason}); write it as one "
                      "SELECT over database.table names (PIVOT needs an explicit IN list)")
    return tree


@dataclass
class Names:
    """What a statement's tree names."""

    tables: set[str] = field(default_factory=set)  # db.t, lower case
    bare: set[str] = field(default_factory=set)  # unqualified table names
    ctes: set[str] = field(default_factory=set)
    table_functions: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    catalogs: set[str] = field(default_factory=set)  # catalog.schema.table, as written
    shows: set[str] = field(default_factory=set)


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _names(sql: str) -> Names:
    names = Names()
    for node in _nodes(_tree(sql)):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            catalog, schema = node.get("catalog_name") or "", node.get("schema_name") or ""
            table = str(node.get("table_name") or "")
            if catalog:
                names.catalogs.add(f"{catalog}.{schema}.{table}")
            elif schema:
                names.tables.add(f"{schema}.{table}".lower())
            else:
                names.bare.add(table.lower())
        elif kind == "TABLE_FUNCTION":
            names.table_functions.add(str(node["function"]["function_name"]).lower())
        elif kind == "SHOW_REF":
            names.shows.add(str(node.get("show_type")))
        if node.get("class") == "FUNCTION":
            names.functions.add(str(node.get("function_name")).lower())
        if isinstance(node.get("cte_map"), dict):
            names.ctes.update(str(e["key"]).lower() for e in node["cte_map"].get("map", []))
    return names


def table_names(sql: str) -> set[str]:
    """The ``db.t`` names a SELECT reads, lower case, from its parse tree alone (nothing is
    bound or opened, unlike ``duckdb.get_table_names``). Invalid when it does not parse."""
    return _names(sql).tables


def check(sql: str, *, aliases: Collection[str] = (), known: Collection[str] = ()) -> Names:
    """The names a SELECT reads; Invalid (NotFound for an unknown bare name) for anything it
    may not touch. ``aliases``: bare names Cumulo made for it (time travel); ``known``: the
    lake's tables, to suggest one for a bare name."""
    names = _names(sql)
    if refused := sorted(names.table_functions - TABLE_FUNCTIONS):
        raise Invalid(f"table function {refused[0]}() is not allowed here: Cumulo SQL reads "
                      "nothing outside the lake but its tables, named database.table, and "
                      f"makes rows only with {', '.join(sorted(TABLE_FUNCTIONS))}; load files "
                      "into a table first (cumulo tables load, or the crawler)",
                      details={"function": refused[0]})
    if refused := sorted(names.functions & set(REFUSED_FUNCTIONS)):
        raise Invalid(f"{refused[0]}() is not allowed here: {REFUSED_FUNCTIONS[refused[0]]}",
                      details={"function": refused[0]})
    if names.shows - _SHOWN:
        raise Invalid(f"SHOW is not allowed here: {_LAKE}; DESCRIBE db.t lists a table's "
                      "columns, and cumulo tables ls the tables")
    if names.catalogs:
        name = sorted(names.catalogs)[0]
        raise Invalid(f"{name} names a DuckDB catalog: {_LAKE}", details={"table": name})
    system = _system_names()
    for name in sorted(names.bare - set(aliases)):
        if name in system:
            raise Invalid(f"{name} is one of DuckDB's own catalog views: {_LAKE}",
                          details={"table": name})
        if name not in names.ctes:
            near = difflib.get_close_matches(name, [k.rpartition(".")[2] for k in known],
                                             n=3, cutoff=0.6)
            tables = sorted(k for k in known if k.rpartition(".")[2] in near)
            hint = f"; did you mean {', '.join(tables)}?" if tables else ""
            raise NotFound(f"there is no table {name}. Tables are named database.table{hint}",
                           details={"table": name})
    return names
