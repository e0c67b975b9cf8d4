import { useEffect, useRef } from "react";
import { useBlocker } from "react-router-dom";
import { Confirm } from "./Dialogs";

/** Asks before the user leaves work behind `when` it is set: for another page of the console
 *  (a router blocker, with this dialog) and for another site or a closed tab (the browser's own
 *  beforeunload question). `stays(pathname)` names the addresses that keep the work (the same
 *  bucket's folders, the same pipeline's runs): moving there is not asked. */
export function LeaveGuard({ when, stays, title, confirm, children }: {
  when: boolean;
  stays: (pathname: string) => boolean;
  title: string;
  confirm: string;
  children: React.ReactNode;
}) {
  const latest = useRef({ when, stays });
  latest.current = { when, stays };
  const leaving = useBlocker(({ nextLocation }) =>
    latest.current.when && !latest.current.stays(nextLocation.pathname));
  const proceeded = useRef(false);
  useEffect(() => {
    if (!when) return;
    const ask = (event: BeforeUnloadEvent) => { event.preventDefault(); };
    window.addEventListener("beforeunload", ask);
    return () => window.removeEventListener("beforeunload", ask);
  }, [when]);
  if (leaving.state !== "blocked") return null;
  return (
    <Confirm title={title} confirm={confirm}
             run={async () => { proceeded.current = true; leaving.proceed(); }}
             onClose={() => { if (!proceeded.current) leaving.reset(); proceeded.current = false; }}>
      {children}
    </Confirm>
  );
}
