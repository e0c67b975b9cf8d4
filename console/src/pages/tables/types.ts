// The lake's JSON, as src/cumulo/lake/api.py answers it.

export interface Database {
  name: string;
  description: string;
  tables: number;
  created_at: string;
  created_by: string | null;
}

export interface TableSummary {
  name: string; // db.table
  kind: string; // managed | external
  format: string;
  description: string;
  created_at: string;
  updated_at: string | null;
}

export interface Column {
  name: string;
  type: string;
  nullable: boolean;
}

export interface TableInfo {
  name: string;
  kind: string;
  format: string;
  location: string;
  description: string;
  tags: Record<string, unknown>;
  columns: Column[];
  partition_columns: string[];
  version: number | null;
  rows: number | null;
  bytes: number | null;
  files: number | null;
  created_at: string;
  updated_at: string | null;
}

export interface Version {
  version: number;
  timestamp: string;
  operation: string | null;
  parameters: Record<string, unknown>;
  rows_added: number | null;
  rows_removed: number | null;
  rows_updated: number | null;
  user: string | null;
}

export interface WriteOut {
  table: string;
  version: number;
  rows_added: number | null;
  rows_updated: number | null;
  rows_removed: number | null;
}

export interface CrawlReport {
  database: string;
  path: string;
  created: string[];
  updated: string[];
  unchanged: string[];
  schema_changes: Record<string, unknown>[];
  skipped: Record<string, string>[];
  files: number;
}

export interface Diff {
  table: string;
  from: number;
  to: number;
  keys: string[];
  schema: { added: string[]; removed: string[]; changed: { column: string; from: string; to: string }[] };
  rows_added: number | null;
  rows_removed: number | null;
  rows_changed: number | null;
  sample_added: Record<string, unknown>[];
  sample_removed: Record<string, unknown>[];
  sample_changed: Record<string, unknown>[];
}

export const FORMATS = ["csv", "parquet", "json", "jsonl"] as const;
export type Format = (typeof FORMATS)[number];

const EXTENSIONS: Record<string, Format> = {
  ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json",
  ".jsonl": "jsonl", ".ndjson": "jsonl",
};

/** The format the server would detect from a file's name (".gz" aside), as ingest.py does. */
export function formatOf(name: string): Format | undefined {
  const parts = name.toLowerCase().split(".").slice(1).map((s) => `.${s}`).filter((s) => s !== ".gz");
  for (const suffix of parts.reverse()) if (EXTENSIONS[suffix]) return EXTENSIONS[suffix];
  return undefined;
}

export const tablePath = (db: string, table: string) =>
  `/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}`;

/** The console's page of a table, or of a database. */
export const tableLink = (db: string, table?: string) =>
  table ? `/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}` : `/tables/${encodeURIComponent(db)}`;

export const sqlLink = (db: string, table: string) =>
  `/sql?q=${encodeURIComponent(`SELECT * FROM ${db}.${table} LIMIT 100`)}`;

export const loadLink = (db?: string, table?: string) => {
  const query = new URLSearchParams();
  if (db) query.set("database", db);
  if (table) query.set("table", table);
  const text = query.toString();
  return `/tables/-/load${text ? `?${text}` : ""}`;
};

/** "sales.orders" → ["sales", "orders"]. */
export function splitName(name: string): [string, string] {
  const dot = name.indexOf(".");
  return [name.slice(0, dot), name.slice(dot + 1)];
}
