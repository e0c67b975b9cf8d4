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

__all__ = ["REFUSED_FUNCTIONS", "TABLE_FUNCTIONS", "Names", "check", "check_expression",
           "table_names"]

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


def _parse(sql: str) -> dict[str, Any]:
    """The statement's tree; ``{"error": True, "error_message": ...}`` when it does not parse."""
    with _PARSER_LOCK:
        row = _parser().execute("SELECT json_serialize_sql($1::VARCHAR)", [sql]).fetchone()
    tree: dict[str, Any] = orjson.loads(row[0]) if row else {"error": True}
    return tree


def _tree(sql: str) -> dict[str, Any]:
    tree = _parse(sql)
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
        if name.startswith("__") or not name.replace("_", "a").isalnum():
            # Cumulo's own names in the sandbox (a dataset under a masked view) and paths
            # are never a CTE's to shadow: a CTE of that name elsewhere in the statement
            # would otherwise let the bare name through, and reach the raw data.
            raise Invalid(f"{name!r} is not allowed here. Tables are named database.table, "
                          "and a CTE's name is plain letters, digits and '_', not starting "
                          "with '__'", details={"table": name})
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


# --- one expression over one row: column masks and row filters --------------------------------

_ROW = "__cumulo_row"
# What a SELECT made around the expression may hold besides it: nothing.
_EMPTY_CLAUSES = ("where_clause", "having", "qualify", "sample")


@cache
def _functions(kind: str) -> frozenset[str]:
    """The names of DuckDB's functions of one type: aggregate, scalar, table..."""
    with _PARSER_LOCK:
        rows = _parser().execute("SELECT DISTINCT function_name FROM duckdb_functions() "
                                 "WHERE function_type = $1", [kind]).fetchall()
    return frozenset(str(name).lower() for (name,) in rows)


def _expression_tree(text: str, what: str) -> dict[str, Any]:
    """The parse tree of ``SELECT <text> FROM <row>``, refused unless it is exactly that."""
    tree = _parse(f"SELECT {text}\nFROM {_ROW}")
    if tree.get("error"):
        reason = str(tree.get("error_message") or "it cannot be parsed")
        raise Invalid(f"{what} is not one SQL expression ({reason})",
                      details={"expression": text})
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    source = node.get("from_table") or {}
    if (node.get("type") != "SELECT_NODE" or len(node.get("select_list") or []) != 1
            or source.get("type") != "BASE_TABLE" or source.get("table_name") != _ROW
            or source.get("alias") or source.get("schema_name") or node.get("modifiers")
            or node.get("group_expressions") or (node.get("cte_map") or {}).get("map")
            or any(node.get(key) for key in _EMPTY_CLAUSES)):
        raise Invalid(f"{what} must be one expression over the row's columns, e.g. '***', "
                      "left(email, 2) || '***' or region = 'EU'; not a query or a list",
                      details={"expression": text})
    return tree


def _check_nodes(expression: dict[str, Any], columns: Collection[str], what: str) -> None:
    known = {c.lower() for c in columns}
    params = {str(n).lower() for node in _nodes(expression) if node.get("class") == "LAMBDA"
              for ref in _nodes(node.get("lhs")) if ref.get("class") == "COLUMN_REF"
              for n in ref.get("column_names") or []}
    for node in _nodes(expression):
        kind = node.get("class")
        if kind == "SUBQUERY" or node.get("type") in ("BASE_TABLE", "TABLE_FUNCTION"):
            raise Invalid(f"{what} may not hold a subquery or name a table: it is computed "
                          "from one row's own columns")
        if kind == "STAR":
            raise Invalid(f"{what} may not use * or COLUMNS(...): name the columns")
        if kind == "PARAMETER":
            raise Invalid(f"{what} may not hold a parameter ($1, ?): write the value")
        if kind == "WINDOW":
            raise Invalid(f"{what} may not use a window function "
                          f"({node.get('function_name')} OVER ...): it sees one row")
        if kind == "FUNCTION":
            name = str(node.get("function_name") or "").lower()
            if name in REFUSED_FUNCTIONS:
                raise Invalid(f"{name}() is not allowed in {what}: {REFUSED_FUNCTIONS[name]}",
                              details={"function": name})
            if name in _functions("aggregate"):
                raise Invalid(f"{what} may not use the aggregate {name}(): it is computed "
                              "from one row", details={"function": name})
            if name in _functions("table") and name not in _functions("scalar"):
                raise Invalid(f"{what} may not call the table function {name}(): it is "
                              "computed from one row's own columns", details={"function": name})
        if kind == "COLUMN_REF":
            parts = [str(p) for p in node.get("column_names") or []]
            first = parts[0].lower() if parts else ""
            if first not in known and first not in params:
                listed = ", ".join(columns) or "none"
                raise Invalid(f"{what} names {'.'.join(parts)}, which is not a column of the "
                              f"table (its columns: {listed})",
                              details={"column": ".".join(parts)})


def _without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items()
                if k not in ("query_location", "query_location_length")}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


def check_expression(text: str, *, columns: Collection[str], what: str) -> str:
    """``text`` as one SQL expression over one row of a table whose columns are ``columns``
    (a column mask, a row filter), written back by DuckDB's own parser: comments and layout
    gone, so it can be put inside a larger statement as it is. Invalid, naming ``what`` and
    what is wrong, for a query, a list, a subquery, a table or table function, a column the
    table lacks, an aggregate, a window, a parameter, or a refused function."""
    if not text.strip():
        raise Invalid(f"{what} is empty: give an SQL expression, e.g. '***' or region = 'EU'")
    tree = _expression_tree(text, what)
    node = tree["statements"][0]["node"]
    expression = node["select_list"][0]
    _check_nodes(expression, columns, what)
    expression["alias"] = ""
    with _PARSER_LOCK:
        row = _parser().execute("SELECT json_deserialize_sql($1::JSON)",
                                [orjson.dumps(tree).decode()]).fetchone()
    written = str(row[0]) if row else ""
    head, tail = "SELECT ", f" FROM {_ROW}"
    canonical = written[len(head):-len(tail)] if (
        written.startswith(head) and written.endswith(tail)) else ""
    # What is stored must mean what was checked: parsed again, the same tree.
    again = _expression_tree(canonical, what) if canonical else {}
    if not canonical or _without_locations(again) != _without_locations(
            {**tree, "statements": [{**tree["statements"][0], "node": {
                **node, "select_list": [expression]}}]}):
        raise Invalid(f"{what} cannot be written back as it was parsed; write it more plainly",
                      details={"expression": text})
    return canonical
