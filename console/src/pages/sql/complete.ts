// The SQL editor's language knowledge: a tokenizer (for colours and for knowing when the caret is
// in a string or a comment) and the completions offered at the caret. Pure functions, no React.

export const KEYWORDS = [
  "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "JOIN", "LEFT",
  "RIGHT", "INNER", "OUTER", "FULL", "CROSS", "ON", "USING", "AS", "AND", "OR", "NOT", "IN", "IS",
  "NULL", "LIKE", "ILIKE", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT", "UNION",
  "ALL", "EXCEPT", "INTERSECT", "WITH", "CREATE", "TABLE", "INSERT", "INTO", "VALUES", "EXPLAIN",
  "ANALYZE", "DESCRIBE", "VERSION", "TIMESTAMP", "OF", "ASC", "DESC", "NULLS", "FIRST", "LAST",
  "TRUE", "FALSE", "CAST", "OVER", "PARTITION", "WINDOW", "ROWS", "RANGE", "QUALIFY", "FILTER",
  "IF", "EXISTS", "INTERVAL", "DATE",
];

export const FUNCTIONS = [
  "count", "sum", "avg", "min", "max", "round", "coalesce", "date_trunc", "date_diff", "strftime",
  "lower", "upper", "length", "abs", "approx_count_distinct", "median", "quantile_cont", "stddev",
  "string_agg", "concat", "substring", "regexp_matches", "extract", "year", "month", "day", "now",
  "current_date", "arg_max", "arg_min", "row_number", "rank", "lag", "lead", "nullif", "greatest",
  "least", "floor", "ceil", "list", "unnest",
];

const KEYWORD_SET = new Set(KEYWORDS);

export type TokenKind = "keyword" | "function" | "string" | "number" | "comment" | "ident" | "quoted" | "punct" | "space";

export interface Token {
  kind: TokenKind;
  text: string;
  start: number;
  /** A string or comment that the text ends inside. */
  open?: boolean;
}

export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const push = (kind: TokenKind, end: number, open = false) => {
    out.push({ kind, text: sql.slice(i, end), start: i, open });
    i = end;
  };
  while (i < sql.length) {
    const c = sql[i];
    const rest = sql.slice(i);
    if (/\s/.test(c)) {
      push("space", i + (/^\s+/.exec(rest)?.[0].length ?? 1));
    } else if (rest.startsWith("--")) {
      const end = sql.indexOf("\n", i);
      push("comment", end < 0 ? sql.length : end, end < 0);
    } else if (rest.startsWith("/*")) {
      const end = sql.indexOf("*/", i + 2);
      push("comment", end < 0 ? sql.length : end + 2, end < 0);
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) { j += 2; continue; } // '' inside a string is a quote
          break;
        }
        j += 1;
      }
      push(c === "'" ? "string" : "quoted", Math.min(j + 1, sql.length), j >= sql.length);
    } else if (/[0-9]/.test(c)) {
      push("number", i + (/^[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?/.exec(rest)?.[0].length ?? 1));
    } else if (/[A-Za-z_]/.test(c)) {
      const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest)![0];
      const next = sql.slice(i + word.length).match(/^\s*\(/);
      const kind = KEYWORD_SET.has(word.toUpperCase()) ? "keyword" : next ? "function" : "ident";
      push(kind, i + word.length);
    } else {
      push("punct", i + 1);
    }
  }
  return out;
}

/** A column's name as SQL needs it: quoted when it is not a plain word or is a keyword. */
export function ident(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !KEYWORD_SET.has(name.toUpperCase())
    ? name : `"${name.replace(/"/g, '""')}"`;
}

export interface Column {
  name: string;
  type: string;
}

/** What the editor knows of the catalog: names, and the columns of the tables loaded so far. */
export interface Catalog {
  databases: string[];
  tables: string[];
  columns: (table: string) => Column[] | undefined;
}

export type SuggestionKind = "column" | "table" | "database" | "keyword" | "function";

export interface Suggestion {
  label: string;
  insert: string;
  kind: SuggestionKind;
  detail?: string;
  /** Where the caret goes after inserting, counted back from the end of `insert`. */
  back?: number;
}

export interface Completion {
  from: number;
  to: number;
  items: Suggestion[];
}

/** The tables a query names (db.table), and its aliases: `FROM sales.orders o` maps o. */
export function tablesIn(sql: string, catalog: Catalog): { tables: string[]; aliases: Map<string, string> } {
  const known = new Set(catalog.tables.map((t) => t.toLowerCase()));
  const tables = new Set<string>();
  const aliases = new Map<string, string>();
  const pattern = /\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b(?:\s+(?:VERSION\s+AS\s+OF\s+\d+|TIMESTAMP\s+AS\s+OF\s+'[^']*'))?(?:\s+(?:AS\s+)?([A-Za-z_]\w*))?/gi;
  for (const m of sql.matchAll(pattern)) {
    const name = `${m[1]}.${m[2]}`.toLowerCase();
    if (!known.has(name)) continue;
    tables.add(name);
    aliases.set(m[2].toLowerCase(), name);
    if (m[3] && !KEYWORD_SET.has(m[3].toUpperCase())) aliases.set(m[3].toLowerCase(), name);
  }
  return { tables: [...tables], aliases };
}

/** The last keyword before `at`: it says what is wanted next (a table after FROM, ...). */
function lastKeyword(tokens: Token[], at: number): string | undefined {
  for (let i = tokens.length - 1; i >= 0; i -= 1) {
    const t = tokens[i];
    if (t.start >= at) continue;
    if (t.kind === "keyword") return t.text.toUpperCase();
  }
  return undefined;
}

/** What to offer at the caret; null when nothing should pop up (in a string, say). */
export function complete(sql: string, caret: number, catalog: Catalog, explicit = false): Completion | null {
  const before = sql.slice(0, caret);
  const tokens = tokenize(before);
  const last = tokens[tokens.length - 1];
  if (last && ["comment", "quoted", "string", "number"].includes(last.kind)) return null;
  const word = /[A-Za-z0-9_.]*$/.exec(before)![0];
  const from = caret - word.length;
  const dot = word.lastIndexOf(".");
  const partial = (dot >= 0 ? word.slice(dot + 1) : word).toLowerCase();
  // Popping up after one letter would make Enter take "order" for an alias "o".
  if (!explicit && dot < 0 && partial.length < 2) return null;
  const named = tablesIn(sql, catalog);
  let items: (Suggestion & { rank: number })[] = [];

  const columnsOf = (table: string, rank: number) => (catalog.columns(table) ?? []).map((c) => ({
    label: c.name, insert: ident(c.name), kind: "column" as const, detail: `${c.type} · ${table}`, rank,
  }));

  if (dot >= 0) {
    const qualifier = word.slice(0, dot).toLowerCase();
    const start = from + dot + 1;
    const parts = qualifier.split(".");
    if (parts.length === 1 && catalog.databases.some((d) => d.toLowerCase() === qualifier)) {
      items = catalog.tables.filter((t) => t.toLowerCase().startsWith(qualifier + ".")).map((t) => ({
        label: t.slice(qualifier.length + 1), insert: t.slice(qualifier.length + 1), kind: "table" as const,
        detail: t, rank: 0,
      }));
    }
    const table = parts.length === 2 ? qualifier : named.aliases.get(qualifier);
    if (table && catalog.tables.some((t) => t.toLowerCase() === table)) items.push(...columnsOf(table, 0));
    return finish(items, partial, start, caret, explicit);
  }

  const keyword = lastKeyword(tokens, from);
  const wantsTable = keyword !== undefined && ["FROM", "JOIN", "INTO", "TABLE", "DESCRIBE"].includes(keyword);
  const atStart = tokens.every((t) => t.kind === "space" || t.kind === "comment" || t.start >= from);
  const rank = (kind: SuggestionKind): number => {
    if (atStart) return kind === "keyword" ? 0 : 3;
    if (wantsTable) return kind === "table" ? 0 : kind === "database" ? 1 : kind === "keyword" ? 2 : 3;
    return { column: 0, function: 1, keyword: 2, table: 3, database: 4 }[kind];
  };
  for (const table of named.tables) items.push(...columnsOf(table, rank("column")));
  for (const table of catalog.tables) {
    items.push({ label: table, insert: table, kind: "table", rank: rank("table") });
  }
  for (const db of catalog.databases) {
    items.push({ label: db, insert: db + ".", kind: "database", detail: "database", rank: rank("database") });
  }
  const upper = word === "" || word !== word.toLowerCase();
  for (const k of KEYWORDS) {
    items.push({ label: upper ? k : k.toLowerCase(), insert: upper ? k : k.toLowerCase(), kind: "keyword", rank: rank("keyword") });
  }
  for (const f of FUNCTIONS) {
    items.push({ label: f, insert: `${f}()`, back: 1, kind: "function", detail: "function", rank: rank("function") });
  }
  return finish(items, partial, from, caret, explicit);
}

function finish(items: (Suggestion & { rank: number })[], partial: string, from: number, to: number,
                explicit: boolean): Completion | null {
  const scored: [number, Suggestion & { rank: number }][] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const label = item.label.toLowerCase();
    const short = label.includes(".") ? label.slice(label.lastIndexOf(".") + 1) : label;
    // A word typed whole ("desc", "or") closes the list, so Enter after it is a new line,
    // not DESCRIBE or ORDER; Ctrl+Space still lists what else it could be.
    if (label === partial && partial && !explicit) return null;
    if (label === partial || seen.has(item.kind + label)) continue;
    let score: number;
    if (label.startsWith(partial) || short.startsWith(partial)) score = 0;
    else if (partial && label.includes(partial)) score = 1;
    else continue;
    seen.add(item.kind + label);
    scored.push([score, item]);
  }
  scored.sort((a, b) => a[0] - b[0] || a[1].rank - b[1].rank || a[1].label.localeCompare(b[1].label));
  const out = scored.slice(0, 50).map(([, item]) => {
    const { rank: _rank, ...rest } = item;
    void _rank;
    return rest;
  });
  return out.length ? { from, to, items: out } : null;
}
