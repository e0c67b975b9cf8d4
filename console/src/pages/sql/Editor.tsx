// A light SQL editor: a plain <textarea> over a coloured copy of its text, line numbers, and a
// completion popup (keywords, db.table names, the columns of the tables the query names).
// Edits go through the browser's own text insertion, so Ctrl+Z undoes them as usual.

import { useEffect, useId, useImperativeHandle, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { Ref } from "react";
import { Catalog, complete, Suggestion, tokenize } from "./complete";

export interface EditorHandle {
  /** Put text at the caret (replacing the selection), as if typed. */
  insert: (text: string) => void;
  focus: () => void;
  /** The selected text, if any. */
  selected: () => string;
}

const MAC = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform);
export const RUN_KEYS = MAC ? "⌘ Enter" : "Ctrl+Enter";
const PAD = 8; // the text's padding, in px: the same in the textarea and its coloured copy

export function Editor({ value, onChange, onRun, catalog, errorLine, label, hint, ref }: {
  value: string;
  onChange: (value: string) => void;
  onRun: () => void;
  catalog: Catalog & { want: (tables: string[]) => void; version: number };
  errorLine?: number;
  label: string;
  /** The id of the text that says which keys do what. */
  hint?: string;
  ref?: Ref<EditorHandle>;
}) {
  const area = useRef<HTMLTextAreaElement>(null);
  const shade = useRef<HTMLPreElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const probe = useRef<HTMLSpanElement>(null);
  const [caret, setCaret] = useState(0);
  const [popup, setPopup] = useState<{ explicit: boolean } | null>(null);
  const [index, setIndex] = useState(0);
  const [scroll, setScroll] = useState({ top: 0, left: 0 });
  const [metrics, setMetrics] = useState({ char: 8, line: 20 });
  const listId = useId();
  const openAfterInsert = useRef<boolean | null>(null);
  const leaving = useRef(false);

  const completion = useMemo(
    () => (popup ? complete(value, caret, catalog, popup.explicit) : null),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [popup, value, caret, catalog.version],
  );
  const items = completion?.items ?? [];
  const shown = popup !== null && items.length > 0;

  useEffect(() => setIndex(0), [completion?.from, items.length]);

  // The columns of the tables a query names are fetched as they appear in it.
  const { want } = catalog;
  useEffect(() => {
    const names = [...value.matchAll(/\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b/g)].map((m) => m[1].toLowerCase());
    const known = new Set(catalog.tables.map((t) => t.toLowerCase()));
    const wanted = [...new Set(names.filter((n) => known.has(n)))];
    if (wanted.length) want(wanted);
  }, [value, want, catalog.tables]);

  useLayoutEffect(() => {
    const measure = () => {
      if (!probe.current || !area.current) return;
      const line = parseFloat(getComputedStyle(area.current).lineHeight) || 20;
      setMetrics({ char: probe.current.getBoundingClientRect().width / 10 || 8, line });
    };
    measure();
    document.fonts?.ready.then(measure).catch(() => undefined);
  }, []);

  const insert = (text: string, from?: number, to?: number) => {
    const box = area.current;
    if (!box) return;
    box.focus();
    if (from !== undefined && to !== undefined) box.setSelectionRange(from, to);
    // execCommand keeps the browser's undo history; setRangeText is the fallback.
    if (!document.execCommand("insertText", false, text)) {
      box.setRangeText(text, box.selectionStart, box.selectionEnd, "end");
      onChange(box.value);
    }
    setCaret(box.selectionStart);
  };

  useImperativeHandle(ref, () => ({
    insert: (text: string) => { openAfterInsert.current = false; insert(text); setPopup(null); },
    focus: () => area.current?.focus(),
    selected: () => {
      const box = area.current;
      return box ? box.value.slice(box.selectionStart, box.selectionEnd) : "";
    },
  }));

  const accept = (item: Suggestion) => {
    if (!completion) return;
    // A database's name is followed by its tables: the popup stays open after "db.".
    openAfterInsert.current = item.kind === "database";
    insert(item.insert, completion.from, completion.to);
    if (item.back && area.current) {
      const at = area.current.selectionStart - item.back;
      area.current.setSelectionRange(at, at);
      setCaret(at);
    }
    if (item.kind !== "database") setPopup(null);
  };

  const onInput = (event: React.ChangeEvent<HTMLTextAreaElement>) => {
    const box = event.target;
    onChange(box.value);
    setCaret(box.selectionStart);
    const native = event.nativeEvent as InputEvent;
    const forced = openAfterInsert.current;
    openAfterInsert.current = null;
    if (forced !== null) {
      setPopup(forced ? { explicit: false } : null);
    } else if (native.inputType === "insertText" && native.data && /^[\w.]$/.test(native.data)) {
      setPopup((p) => p ?? { explicit: false });
    } else if (native.inputType?.startsWith("delete")) {
      // keep it as it is: backspace narrows or widens the same list
    } else {
      setPopup(null);
    }
  };

  const onKeyDown = (event: React.KeyboardEvent<HTMLTextAreaElement>) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      setPopup(null);
      onRun();
      return;
    }
    if (event.ctrlKey && (event.key === " " || event.code === "Space")) {
      event.preventDefault();
      setCaret(event.currentTarget.selectionStart);
      setPopup({ explicit: true });
      return;
    }
    if (shown) {
      const move = { ArrowDown: 1, ArrowUp: -1, PageDown: 8, PageUp: -8 }[event.key];
      if (move !== undefined) {
        event.preventDefault();
        setIndex((i) => Math.max(0, Math.min(items.length - 1, i + move)));
        return;
      }
      if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey && !event.altKey) {
        event.preventDefault();
        accept(items[Math.min(index, items.length - 1)]);
        return;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        setPopup(null);
        return;
      }
    }
    if (event.key === "Escape") {
      leaving.current = true;
      return;
    }
    const leave = leaving.current;
    leaving.current = false;
    if (event.key === "Tab" && !leave && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey) {
      // Tab indents; Escape then Tab (or Shift+Tab) leaves the editor, as in other code editors.
      event.preventDefault();
      openAfterInsert.current = false;
      insert("  ");
      return;
    }
    if (["ArrowLeft", "ArrowRight", "Home", "End", "ArrowUp", "ArrowDown", "PageUp", "PageDown"].includes(event.key)) {
      setPopup(null);
    }
  };

  const onScroll = () => {
    const box = area.current;
    if (box) setScroll({ top: box.scrollTop, left: box.scrollLeft });
  };

  // Keep the chosen suggestion in view.
  const list = useRef<HTMLUListElement>(null);
  useEffect(() => {
    const ul = list.current;
    const li = ul?.querySelector<HTMLElement>(`[data-index="${index}"]`);
    if (!ul || !li) return;
    // Only the list scrolls (scrollIntoView would move the page as well).
    if (li.offsetTop < ul.scrollTop) ul.scrollTop = li.offsetTop;
    else if (li.offsetTop + li.offsetHeight > ul.scrollTop + ul.clientHeight) {
      ul.scrollTop = li.offsetTop + li.offsetHeight - ul.clientHeight;
    }
  }, [index, shown]);

  const lines = value.split("\n").length;
  const tokens = useMemo(() => tokenize(value), [value]);
  const gutterWidth = 12 + String(lines).length * metrics.char + 10;
  let popupStyle: React.CSSProperties | undefined;
  if (shown && completion) {
    const head = value.slice(0, completion.from);
    const row = head.split("\n").length - 1;
    const col = head.length - head.lastIndexOf("\n") - 1;
    const room = (area.current?.clientWidth ?? 600) + gutterWidth;
    const width = Math.min(340, room - 8);
    const left = Math.max(0, Math.min(gutterWidth + PAD + col * metrics.char - scroll.left, room - width - 4));
    popupStyle = { top: PAD + (row + 1) * metrics.line - scroll.top + 2, left, width };
  }
  const active = shown ? `${listId}-${Math.min(index, items.length - 1)}` : undefined;

  return (
    <div className="sql-editor">
      <div className="sql-gutter" ref={gutter} aria-hidden="true" style={{ width: gutterWidth }}>
        <div style={{ transform: `translateY(${-scroll.top}px)` }}>
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} className={errorLine === i + 1 ? "error-line" : undefined}>{i + 1}</div>
          ))}
        </div>
      </div>
      <div className="sql-area">
        <pre ref={shade} className="sql-shade" aria-hidden="true">
          <code style={{ transform: `translate(${-scroll.left}px, ${-scroll.top}px)` }}>
            {tokens.map((t) => t.kind === "space" || t.kind === "punct" || t.kind === "ident"
              ? t.text : <span key={t.start} className={`tok-${t.kind}`}>{t.text}</span>)}
            {"\n "}
          </code>
        </pre>
        <span ref={probe} className="sql-probe" aria-hidden="true">MMMMMMMMMM</span>
        <textarea
          ref={area} value={value} aria-label={label} aria-describedby={hint} spellCheck={false} autoCapitalize="off"
          autoComplete="off" autoCorrect="off" wrap="off" rows={10}
          placeholder="SELECT * FROM database.table LIMIT 10"
          aria-autocomplete="list" aria-controls={shown ? listId : undefined}
          aria-expanded={shown} aria-activedescendant={active}
          onChange={onInput} onKeyDown={onKeyDown} onScroll={onScroll}
          onMouseDown={() => setPopup(null)} onBlur={() => setPopup(null)}
          onSelect={(e) => setCaret(e.currentTarget.selectionStart)}
        />
      </div>
      {shown && (
        <ul ref={list} id={listId} role="listbox" aria-label="Suggestions" className="sql-popup" style={popupStyle}>
          {items.map((item, i) => (
            <li key={item.kind + item.label} id={`${listId}-${i}`} data-index={i} role="option"
                aria-selected={i === index} className={i === index ? "active" : undefined}
                onMouseDown={(e) => { e.preventDefault(); accept(item); }}
                onMouseMove={() => i !== index && setIndex(i)}>
              <span className={`kind kind-${item.kind}`} aria-hidden="true">{item.kind[0]}</span>
              <span className="label">{item.label}</span>
              {item.detail && <span className="detail">{item.detail}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
