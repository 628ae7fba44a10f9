// Path-based routing over the history API. The server answers index.html for the dashboard's
// paths, so a deep link opens the view it names; everything else (/api/…, /health …) is the
// API's.

import { useCallback, useEffect, useState } from 'preact/hooks';
import { decodeState, encodeState, type Spec } from './urlstate';

export type View = 'overview' | 'devices' | 'device' | 'alerts' | 'analytics' | 'sql' | 'admin' | 'not-found';

export interface Route {
  view: View;
  /** The device of `/devices/<id>`. */
  deviceId?: string;
}

/** The view a path names. */
export function parseRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/overview') return { view: 'overview' };
  if (path === '/devices') return { view: 'devices' };
  const m = /^\/devices\/([^/]+)$/.exec(path);
  if (m) {
    try {
      return { view: 'device', deviceId: decodeURIComponent(m[1]) };
    } catch {
      return { view: 'not-found' };
    }
  }
  if (path === '/alerts') return { view: 'alerts' };
  if (path === '/analytics') return { view: 'analytics' };
  if (path === '/sql') return { view: 'sql' };
  if (path === '/admin') return { view: 'admin' };
  return { view: 'not-found' };
}

/** The path of a device's page. */
export function devicePath(id: string): string {
  return `/devices/${encodeURIComponent(id)}`;
}

const CHANGE = 'eddy:locationchange';

function notify() {
  window.dispatchEvent(new Event(CHANGE));
}

/** Goes to `to` (path and query): a new history entry, or the current one replaced. */
export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const current = location.pathname + location.search;
  if (to === current) return;
  if (opts.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  notify();
  if (!opts.replace) window.scrollTo(0, 0);
}

/** The current location, re-rendering on every change (links, back/forward, state updates). */
export function useLocation(): { pathname: string; search: string } {
  const read = () => ({ pathname: location.pathname, search: location.search });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const on = () => {
      setLoc((prev) => {
        const next = read();
        return prev.pathname === next.pathname && prev.search === next.search ? prev : next;
      });
    };
    window.addEventListener('popstate', on);
    window.addEventListener(CHANGE, on);
    return () => {
      window.removeEventListener('popstate', on);
      window.removeEventListener(CHANGE, on);
    };
  }, []);
  return loc;
}

/**
 * A view's state in the query string: the decoded state, and a setter that merges a change
 * into it and writes the URL (replacing the history entry: state changes are not steps back).
 */
export function useQueryState<S extends Spec>(spec: S): [S, (change: Partial<S>, opts?: { push?: boolean }) => void] {
  const { pathname, search } = useLocation();
  const state = decodeState(search, spec);
  const set = useCallback(
    (change: Partial<S>, opts: { push?: boolean } = {}) => {
      const current = decodeState(location.search, spec);
      const next = { ...current, ...change };
      navigate(location.pathname + encodeState(next, spec), { replace: !opts.push });
    },
    // The spec is a module constant of each view.
    [spec],
  );
  void pathname;
  return [state, set];
}

/** Handles a click on a same-origin link without reloading (unless a modifier asks for a tab). */
export function onLinkClick(e: MouseEvent, href: string): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(href);
}
