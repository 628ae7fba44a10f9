import { useRef, useState } from 'preact/hooks';
import { whoami, type Session, ApiError } from '../lib/session';
import { ThemeToggle } from '../components/ThemeToggle';

/** Sign in with an API key: the key is checked with `GET /api/v1/whoami` before it is kept. */
export function SignIn({ message, onSignedIn }: { message?: string; onSignedIn: (s: Session) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) {
      setError('Enter an API key.');
      input.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const who = await whoami(k);
      setKey('');
      onSignedIn({ key: k, who });
    } catch (err) {
      const e2 = err as ApiError;
      setError(e2.status === 401 ? `That key was refused: ${e2.message}` : e2.message);
      setBusy(false);
      input.current?.select();
    }
  };

  return (
    <div class="signin-page">
      <main class="signin" id="main">
        <h1>
          <svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true">
            <path class="brand-mark" d="M12 3a9 9 0 1 0 9 9h-3a6 6 0 1 1-6-6V3Zm0 6a3 3 0 1 0 3 3h-3V9Z" />
          </svg>{' '}
          Eddy
        </h1>
        <p class="muted">Real-time analytics. Sign in with an API key of your tenant.</p>
        {message && !error && (
          <p class="notice" role="status">
            {message}
          </p>
        )}
        <form onSubmit={submit} noValidate>
          <div class="field">
            <label for="api-key">API key</label>
            <input
              id="api-key"
              ref={input}
              type="password"
              autoComplete="off"
              spellcheck={false}
              value={key}
              onInput={(e) => setKey(e.currentTarget.value)}
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? 'signin-error' : 'signin-hint'}
              autoFocus
            />
            <small id="signin-hint" class="hint">
              The first start printed an admin key and saved it in <code>data/admin.key</code>. The key stays in this tab only.
            </small>
          </div>
          {error && (
            <p id="signin-error" class="state error" role="alert">
              {error}
            </p>
          )}
          <button type="submit" class="btn primary" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      </main>
      <div class="signin-theme">
        <ThemeToggle />
      </div>
    </div>
  );
}
