import { useEffect, useId, useRef, useState } from "react";
import { ErrorBox } from "./ErrorBox";
import "./Dialogs.css";

/** A modal question before something that cannot be undone. It runs the action itself and
 *  stays open with the API's message when the action fails; it closes when it succeeds. */
export function Confirm<R>({ title, children, confirm = "Delete", danger = true, run, onClose, onDone }: {
  title: string;
  children: React.ReactNode;
  confirm?: string;
  danger?: boolean;
  run: () => Promise<R>;
  onClose: () => void;
  onDone?: (result: R) => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    const element = dialog.current;
    if (element && !element.open) element.showModal();
    return () => element?.close();
  }, []);

  const go = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const result = await run();
      onDone?.(result);
      onClose();
    } catch (exc) {
      setError(exc);
      setBusy(false);
    }
  };

  return (
    <dialog ref={dialog} className="confirm-dialog" aria-labelledby={titleId}
            onCancel={(event) => { event.preventDefault(); if (!busy) onClose(); }}>
      <h2 id={titleId}>{title}</h2>
      <div className="confirm-body">{children}</div>
      <ErrorBox error={error} />
      <div className="confirm-actions">
        <button type="button" onClick={onClose} disabled={busy}>Cancel</button>
        <button type="button" className={danger ? "danger" : "primary"} onClick={go} disabled={busy}>
          {busy ? `${confirm}…` : confirm}
        </button>
      </div>
    </dialog>
  );
}

/** A progress bar a screen reader can read: `fraction` from 0 to 1. */
export function Progress({ fraction, label }: { fraction: number; label: string }) {
  const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  return (
    <div className="progress" role="progressbar" aria-label={label} aria-valuemin={0}
         aria-valuemax={100} aria-valuenow={percent}>
      <div style={{ width: `${percent}%` }} />
    </div>
  );
}

/** A short-lived success line ("Deleted 3 objects"), announced to screen readers. */
export function Notice({ children, onClose }: { children: React.ReactNode; onClose?: () => void }) {
  if (!children) return null;
  return (
    <div className="ok-notice" role="status">
      <span>{children}</span>
      {onClose && <button type="button" className="link" onClick={onClose} aria-label="Dismiss">✕</button>}
    </div>
  );
}
