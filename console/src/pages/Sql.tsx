// The SQL editor (Athena's query editor): write a query with completion, run it, page through
// or chart its results, download them, and reopen past queries from the history.

import { useCallback, useEffect, useRef, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { ApiError, del, get, Me, post } from "../api";
import { Empty, ErrorBox, PageHeader } from "../components/ErrorBox";
import { seconds } from "../format";
import { useApi } from "../hooks";
import { Editor, EditorHandle, RUN_KEYS } from "./sql/Editor";
import { History } from "./sql/History";
import { Results, Stats } from "./sql/Results";
import { SchemaBrowser, useCatalog } from "./sql/Schema";
import type { FirstPage, QueryOut, SqlResult, Written } from "./sql/types";
import "./Sql.css";

const DRAFT = "cumulo.sql.draft";
const PAGE_SIZE = "cumulo.sql.pageSize";

interface Outcome {
  query: QueryOut;
  first?: FirstPage;
  written?: Written | null;
}

interface Running {
  sql: string;
  started: number;
}

function stored(key: string): string | null {
  try { return localStorage.getItem(key); } catch { return null; }
}

function store(key: string, value: string) {
  try { localStorage.setItem(key, value); } catch { /* private mode: not kept */ }
}

/** The table a CREATE TABLE ... AS or INSERT INTO statement writes. */
function target(sql: string): string | null {
  const m = /^\s*(?:create\s+table\s+(?:if\s+not\s+exists\s+)?|insert\s+into\s+)([A-Za-z_]\w*\.[A-Za-z_]\w*)/i.exec(sql);
  return m ? m[1].toLowerCase() : null;
}

export default function Sql() {
  const [params, setParams] = useSearchParams();
  const catalog = useCatalog();
  const editor = useRef<EditorHandle>(null);
  const [text, setText] = useState(() => params.get("q") ?? stored(DRAFT) ?? "");
  const [running, setRunning] = useState<Running | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [error, setError] = useState<unknown>();
  const [tab, setTab] = useState<"results" | "history">("results");
  const [pageSize, setPageSize] = useState(() => Number(stored(PAGE_SIZE)) || 100);
  const [historyTick, setHistoryTick] = useState(0);
  const me = useApi((signal) => get<Me>("/me", undefined, signal), []);

  useEffect(() => store(DRAFT, text), [text]);
  useEffect(() => store(PAGE_SIZE, String(pageSize)), [pageSize]);

  // A link here with ?q=... (the Tables page's "Query") puts that query in the editor.
  const q = params.get("q");
  useEffect(() => { if (q !== null) setText(q); }, [q]);

  const open = useCallback(async (query: QueryOut, keepText = false) => {
    if (!keepText) setText(query.sql);
    setTab("results");
    setError(undefined);
    setParams({ query: query.id }, { replace: true });
    const wrote = target(query.sql);
    setOutcome({
      query,
      written: wrote && query.state === "succeeded" ? { table: wrote, version: null, rows_added: query.rows } : null,
    });
    if (query.error) setError(new ApiError(0, query.state, query.error));
  }, [setParams]);

  // ?query=ID reopens that query (the URL after a run, so a reload shows the results again);
  // an edited draft stays in the editor.
  useEffect(() => {
    const id = params.get("query");
    if (!id || params.get("q") !== null) return;
    get<QueryOut>(`/sql/queries/${encodeURIComponent(id)}`).then((query) => open(query, !!stored(DRAFT)), setError);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const run = async (sqlText?: string) => {
    const sql = sqlText ?? (editor.current?.selected() || text);
    if (!sql.trim() || running) return;
    setRunning({ sql, started: Date.now() });
    setError(undefined);
    setOutcome(null);
    setTab("results");
    try {
      const out = await post<SqlResult>("/sql", { sql, page_size: pageSize });
      setOutcome({ query: out, first: { columns: out.columns, rows: out.page }, written: out.written });
      if (out.written) catalog.reload(); // a new table, or a new version of one
      setParams({ query: out.id }, { replace: true });
    } catch (exc) {
      setError(exc);
    } finally {
      setRunning(null);
      setHistoryTick((n) => n + 1);
    }
  };

  // A table's first rows; the query being written stays as it is (it goes in an empty editor).
  const preview = (table: string) => {
    if (running) return;
    const sql = `SELECT * FROM ${table} LIMIT 100`;
    if (!text.trim()) setText(sql);
    void run(sql);
  };

  const message = error instanceof Error ? error.message : "";
  const errorLine = Number(/LINE (\d+):/.exec(message)?.[1]) || undefined;

  return (
    <div className="sql-page">
      <PageHeader title="SQL" />
      <div className="sql-layout">
        <div className="sql-main">
          <section className="panel sql-editor-panel" aria-label="Query editor">
            <Editor ref={editor} value={text} onChange={setText} onRun={() => void run()} catalog={catalog}
                    errorLine={errorLine} label="SQL query" hint="sql-keys" />
            <div className="row sql-toolbar">
              <button className="primary" onClick={() => void run()} disabled={!text.trim() || !!running}>
                {running ? "Running…" : "Run"}
              </button>
              <span className="muted sql-keys" id="sql-keys">
                <kbd>{RUN_KEYS}</kbd> runs (the selection, if any) · <kbd>Ctrl Space</kbd> suggests ·{" "}
                <kbd>Esc</kbd> <kbd>Tab</kbd> leaves the editor
              </span>
              <span className="spacer" />
              <button onClick={() => { setText(""); editor.current?.focus(); }} disabled={!text}>Clear</button>
            </div>
          </section>

          <div className="tabs" role="tablist" aria-label="Results and history">
            <button role="tab" id="sql-tab-results" aria-selected={tab === "results"} aria-controls="sql-panel"
                    onClick={() => setTab("results")}>Results</button>
            <button role="tab" id="sql-tab-history" aria-selected={tab === "history"} aria-controls="sql-panel"
                    onClick={() => setTab("history")}>History</button>
          </div>
          <div role="tabpanel" id="sql-panel" aria-labelledby={`sql-tab-${tab}`}>
            {tab === "history" ? (
              <History refresh={historyTick} current={outcome?.query.id} onOpen={(query) => void open(query)} />
            ) : (
              <>
                {running && <RunningBox running={running} user={me.data?.user} />}
                {outcome && !running && (
                  outcome.query.state === "succeeded"
                    ? <Results key={outcome.query.id} query={outcome.query} first={outcome.first}
                               written={outcome.written} pageSize={pageSize} onPageSize={setPageSize} />
                    : <section aria-label="Results" className="sql-results">
                        <Stats query={outcome.query} />
                        {outcome.query.state === "running" && (
                          <p className="muted">This query is still running. <button className="link"
                            onClick={() => get<QueryOut>(`/sql/queries/${outcome.query.id}`).then(open, setError)}>
                            Check again</button></p>
                        )}
                      </section>
                )}
                {!running && <div className="sql-error"><ErrorBox error={error} /></div>}
                {!running && !outcome && !error && (
                  <Empty>Write a query above and press <strong>Run</strong> ({RUN_KEYS}). Tables are named{" "}
                    <code>database.table</code>; time travel: <code>… FROM db.t VERSION AS OF 3</code>.
                    From a terminal: <code>cumulo sql "select …"</code></Empty>
                )}
              </>
            )}
          </div>
        </div>
        <SchemaBrowser catalog={catalog} onInsert={(name) => editor.current?.insert(name)} onPreview={preview} />
      </div>
    </div>
  );
}

/** A query in flight: its elapsed time, and Cancel once its id shows in the history. */
function RunningBox({ running, user }: { running: Running; user?: string }) {
  const [now, setNow] = useState(Date.now());
  const [id, setId] = useState<string>();
  const [cancel, setCancel] = useState<{ busy: boolean; error?: unknown; sent?: boolean }>({ busy: false });

  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 100);
    return () => window.clearInterval(timer);
  }, []);

  // The POST answers only when the query ends; its id is found among the running queries.
  useEffect(() => {
    if (id) return;
    const controller = new AbortController();
    const look = () => get<QueryOut[]>("/sql/queries", { state: "running", limit: 50 }, controller.signal).then(
      (queries) => {
        const mine = queries.find((q) => q.sql === running.sql && (!user || q.created_by === user));
        if (mine) setId(mine.id);
      }, () => undefined);
    const timer = window.setInterval(look, 700);
    return () => { window.clearInterval(timer); controller.abort(); };
  }, [id, running.sql, user]);

  const stop = async () => {
    if (!id) return;
    setCancel({ busy: true });
    try {
      await del(`/sql/queries/${encodeURIComponent(id)}`);
      setCancel({ busy: true, sent: true });
    } catch (exc) {
      setCancel({ busy: false, error: exc });
    }
  };

  return (
    <div className="panel sql-running" role="status">
      <span className="sql-spinner" aria-hidden="true" />
      <span>{cancel.sent ? "Cancelling…" : "Running…"} <span className="mono">{seconds((now - running.started) / 1000)}</span></span>
      <span className="spacer" />
      <button className="danger" onClick={stop} disabled={!id || cancel.busy}
              title={id ? `Cancel query ${id}` : "Finding the query…"}>Cancel</button>
      <ErrorBox error={cancel.error} />
    </div>
  );
}
