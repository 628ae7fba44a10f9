// The shell: signing in, the navigation, the live-connection indicator, the theme toggle and
// the view the path names.

import { useEffect, useMemo, useState } from 'preact/hooks';
import { Link } from './components/ui';
import { LiveIndicator } from './components/LiveIndicator';
import { configureApi } from './lib/api';
import { LiveClient } from './lib/live';
import { parseRoute, useLocation, type View } from './lib/router';
import { Ctx, hasScope, storedKey, storeKey, tenantLabel, whoami, type Session, ApiError } from './lib/session';
import { ThemeToggle } from './components/ThemeToggle';
import { SignIn } from './views/SignIn';
import { Overview } from './views/Overview';
import { Devices } from './views/Devices';
import { Device } from './views/Device';
import { Alerts } from './views/Alerts';
import { Analytics } from './views/Analytics';
import { Sql } from './views/Sql';
import { Admin } from './views/Admin';
import { NotFound, NoRead } from './views/Misc';

const NAV: { view: View; href: string; label: string; scope: 'read' | 'admin' }[] = [
  { view: 'overview', href: '/overview', label: 'Overview', scope: 'read' },
  { view: 'devices', href: '/devices', label: 'Devices', scope: 'read' },
  { view: 'alerts', href: '/alerts', label: 'Alerts', scope: 'read' },
  { view: 'analytics', href: '/analytics', label: 'Analytics', scope: 'read' },
  { view: 'sql', href: '/sql', label: 'SQL', scope: 'read' },
  { view: 'admin', href: '/admin', label: 'Admin', scope: 'admin' },
];

const TITLES: Record<View, string> = {
  overview: 'Overview',
  devices: 'Devices',
  device: 'Device',
  alerts: 'Alerts',
  analytics: 'Analytics',
  sql: 'SQL',
  admin: 'Admin',
  'not-found': 'Not found',
};

type Boot = { phase: 'checking' } | { phase: 'signed-out'; message?: string } | { phase: 'signed-in'; session: Session };

export function App() {
  const [boot, setBoot] = useState<Boot>(() => (storedKey() ? { phase: 'checking' } : { phase: 'signed-out' }));

  const signOut = (message?: string) => {
    storeKey(null);
    setBoot({ phase: 'signed-out', message });
  };

  // Requests read the key from the session; a 401 anywhere signs out with the server's words.
  useEffect(() => {
    configureApi(
      () => storedKey(),
      (e) => signOut(`Signed out: ${e.message}`),
    );
  }, []);

  // A key kept from earlier in this tab: ask who it is again.
  useEffect(() => {
    if (boot.phase !== 'checking') return;
    const key = storedKey();
    if (!key) {
      setBoot({ phase: 'signed-out' });
      return;
    }
    whoami(key).then(
      (who) => setBoot({ phase: 'signed-in', session: { key, who } }),
      (e: ApiError) => {
        if (e.status === 401) signOut(`Signed out: ${e.message}`);
        else setBoot({ phase: 'signed-out', message: e.message });
      },
    );
  }, [boot.phase]);

  if (boot.phase === 'checking') {
    return (
      <div class="boot" role="status">
        Checking your key…
      </div>
    );
  }
  if (boot.phase === 'signed-out') {
    return (
      <SignIn
        message={boot.message}
        onSignedIn={(session) => {
          storeKey(session.key);
          setBoot({ phase: 'signed-in', session });
        }}
      />
    );
  }
  return <Shell session={boot.session} signOut={signOut} />;
}

function Shell({ session, signOut }: { session: Session; signOut: (m?: string) => void }) {
  const { pathname } = useLocation();
  const route = parseRoute(pathname);
  const live = useMemo(
    () =>
      new LiveClient(
        () => storedKey(),
        undefined,
        (reason) => signOut(`Signed out: the live feed refused the key (${reason}).`),
      ),
    [session.key],
  );
  const canRead = hasScope(session.who, 'read');
  const isAdmin = hasScope(session.who, 'admin');

  useEffect(() => {
    if (canRead) live.start();
    return () => live.stop();
  }, [live, canRead]);

  useEffect(() => {
    document.title = `${TITLES[route.view]} · Eddy`;
  }, [route.view]);

  // The main region takes focus on navigation so keyboard and screen-reader users land there.
  useEffect(() => {
    const main = document.getElementById('main');
    if (main && document.activeElement && document.activeElement.closest('nav')) main.focus({ preventScroll: true });
  }, [route.view]);

  const ctx = useMemo(() => ({ session, live, signOut }), [session, live]);
  const active = route.view === 'device' ? 'devices' : route.view;
  const nav = NAV.filter((n) => (n.scope === 'admin' ? isAdmin : true));

  let body;
  const needsRead = route.view !== 'admin' && route.view !== 'not-found';
  if (needsRead && !canRead) body = <NoRead />;
  else {
    switch (route.view) {
      case 'overview':
        body = <Overview />;
        break;
      case 'devices':
        body = <Devices />;
        break;
      case 'device':
        body = <Device key={route.deviceId} id={route.deviceId ?? ''} />;
        break;
      case 'alerts':
        body = <Alerts />;
        break;
      case 'analytics':
        body = <Analytics />;
        break;
      case 'sql':
        body = <Sql />;
        break;
      case 'admin':
        body = isAdmin ? <Admin /> : <NotFound message="The Admin console needs an admin key." />;
        break;
      default:
        body = <NotFound />;
    }
  }

  return (
    <Ctx.Provider value={ctx}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <Link href="/" class="brand" aria-label="Eddy — Overview">
          <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
            <path class="brand-mark" d="M12 3a9 9 0 1 0 9 9h-3a6 6 0 1 1-6-6V3Zm0 6a3 3 0 1 0 3 3h-3V9Z" />
          </svg>
          <span>Eddy</span>
        </Link>
        <nav aria-label="Main">
          <ul>
            {nav.map((n) => (
              <li key={n.view}>
                <Link href={n.href} class={active === n.view ? 'active' : ''} aria-current={active === n.view ? 'page' : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="topbar-end">
          {canRead && <LiveIndicator />}
          <ThemeToggle />
          <span class="who" title={`tenant ${session.who.tenant_id} · key ${session.who.key_id} · scopes ${session.who.scopes.join(', ')}`}>
            {tenantLabel(session.who)}
          </span>
          <button type="button" class="btn small ghost" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {body}
      </main>
    </Ctx.Provider>
  );
}

