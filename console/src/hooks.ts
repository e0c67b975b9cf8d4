import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, can, Check } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | Error | undefined;
  loading: boolean;
  reload: () => void;
}

/** Load something from the API, again when `deps` change, every `everyMs` when given. */
export function useApi<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[],
                          everyMs?: number): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError | Error>();
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    loadRef.current(controller.signal).then(
      (value) => { if (!controller.signal.aborted) { setData(value); setError(undefined); } },
      (exc) => { if (!controller.signal.aborted && exc?.name !== "AbortError") setError(exc); },
    ).finally(() => { if (!controller.signal.aborted) setLoading(false); });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);

  useEffect(() => {
    if (!everyMs) return;
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") setTick((n) => n + 1);
    }, everyMs);
    return () => window.clearInterval(timer);
  }, [everyMs]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading, reload };
}

/** Run an action (a button's), keeping its error to show and whether it is running. */
export function useAction<A extends unknown[], R>(action: (...args: A) => Promise<R>) {
  const [error, setError] = useState<ApiError | Error>();
  const [busy, setBusy] = useState(false);
  const run = useCallback(async (...args: A): Promise<R | undefined> => {
    setBusy(true);
    setError(undefined);
    try {
      return await action(...args);
    } catch (exc) {
      setError(exc as Error);
      return undefined;
    } finally {
      setBusy(false);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [action]);
  return { run, error, busy, clear: () => setError(undefined) };
}

/** Whether the signed-in caller may take each of `checks`, asked once for the page
 *  (POST /me/can). Until the answer comes, and when asking fails, each is false: a button for
 *  something the caller may not do is never drawn, not even for a moment. */
export function useCan(checks: Check[]): boolean[] {
  const key = JSON.stringify(checks);
  const answer = useApi((signal) => can(checks, signal), [key]);
  return answer.data?.length === checks.length ? answer.data : checks.map(() => false);
}
