// Data hooks shared by the views: a request whose answer stays on screen while it is asked
// again (no flicker, no layout shift), polling, and a clock for relative times.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | null;
  /** The first answer is still coming. */
  loading: boolean;
  /** A request (first or repeated) is in flight. */
  busy: boolean;
  reload: () => void;
  /** Changes the held answer (live updates). */
  mutate: (fn: (d: T | undefined) => T | undefined) => void;
}

function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(0, { error: 'client_error', message: e instanceof Error ? e.message : String(e) });
}

/**
 * Runs `fetcher` when `deps` change (and on `reload`), keeping the previous answer until the
 * new one arrives; answers of superseded requests are dropped. `fetcher` returning `null`
 * means "nothing to ask" (the data is cleared). `pollMs` repeats it while the page is visible.
 */
export function useApi<T>(fetcher: () => Promise<T> | null, deps: unknown[], pollMs = 0): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const seq = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const [tick, setTick] = useState(0);

  const run = useCallback(() => {
    const my = ++seq.current;
    const p = fetcherRef.current();
    if (p === null) {
      setData(undefined);
      setError(null);
      setBusy(false);
      setLoaded(true);
      return;
    }
    setBusy(true);
    p.then(
      (d) => {
        if (my !== seq.current) return;
        setData(d);
        setError(null);
        setBusy(false);
        setLoaded(true);
      },
      (e: unknown) => {
        if (my !== seq.current) return;
        setError(asApiError(e));
        setBusy(false);
        setLoaded(true);
      },
    );
  }, []);

  useEffect(() => {
    setLoaded(false);
    run();
    return () => {
      // Answers arriving after unmount or a change of deps are dropped.
      seq.current++;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);

  useEffect(() => {
    if (!pollMs) return;
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') run();
    }, pollMs);
    return () => clearInterval(id);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pollMs, ...deps]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  const mutate = useCallback((fn: (d: T | undefined) => T | undefined) => setData((d) => fn(d)), []);
  return { data, error, loading: !loaded && data === undefined, busy, reload, mutate };
}

/** The current time, advancing every `ms` (relative times, sliding ranges). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

/**
 * Collects items from a fast source and hands them over once per animation frame, so a burst
 * of live messages costs one render, not one per message. At most `max` items wait.
 */
export function useFrameBatch<T>(flush: (items: T[]) => void, max = 10_000): (item: T) => void {
  const queue = useRef<T[]>([]);
  const frame = useRef<number | null>(null);
  const flushRef = useRef(flush);
  flushRef.current = flush;
  useEffect(
    () => () => {
      if (frame.current !== null) cancelAnimationFrame(frame.current);
    },
    [],
  );
  return useCallback((item: T) => {
    queue.current.push(item);
    // Frames stop in a hidden tab: keep the newest items only, so memory stays bounded.
    if (queue.current.length > max) queue.current.splice(0, queue.current.length - max);
    if (frame.current === null) {
      frame.current = requestAnimationFrame(() => {
        frame.current = null;
        const items = queue.current;
        queue.current = [];
        flushRef.current(items);
      });
    }
  }, [max]);
}

/** Debounces `fn` by `ms`, at most one call in flight per window (re-reads after live data). */
export function useThrottled(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      fnRef.current();
    }, ms);
  }, [ms]);
}
