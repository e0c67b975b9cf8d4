// The SQL API's answers (src/cumulo/lake/api.py: QueryOut, SqlResult, the results page).

import type { Column } from "./complete";

export type Row = Record<string, unknown>;

export interface QueryOut {
  id: string;
  sql: string;
  state: string; // running | succeeded | failed | cancelled
  error: string | null;
  rows: number | null;
  bytes_scanned: number | null;
  cost_usd: number | null;
  duration_ms: number | null;
  created_at: string;
  created_by: string | null;
  finished_at: string | null;
}

export interface SqlResult extends QueryOut {
  columns: Column[];
  page: Row[];
  next_offset: number | null;
  written: Written | null;
}

export interface Written {
  table: string;
  version: number | null;
  rows_added: number | null;
}

export interface ResultsPage {
  id: string;
  offset: number;
  rows: Row[];
  next_offset: number | null;
}

/** What an answer's first page came with; absent for a query reopened from the history. */
export interface FirstPage {
  columns: Column[];
  rows: Row[];
}

const NUMERIC = /^(u?int|float|double|decimal|halffloat)/i;

/** Whether a column holds numbers: by its Arrow type when known, else by its values. */
export function numericColumns(columns: Column[], rows: Row[]): Set<string> {
  const out = new Set<string>();
  for (const c of columns) {
    if (c.type) {
      if (NUMERIC.test(c.type)) out.add(c.name);
    } else {
      const values = rows.map((r) => r[c.name]).filter((v) => v !== null && v !== undefined);
      if (values.length && values.every((v) => typeof v === "number")) out.add(c.name);
    }
  }
  return out;
}

/** The columns of rows whose types are unknown (a page of a reopened query). */
export function columnsOf(rows: Row[]): Column[] {
  return rows.length ? Object.keys(rows[0]).map((name) => ({ name, type: "" })) : [];
}
