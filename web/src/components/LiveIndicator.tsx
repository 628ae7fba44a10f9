// The live-connection indicator: connected, connecting, or reconnecting in N s (with a button
// to try now).

import { useEffect, useState } from 'preact/hooks';
import type { LiveStatus } from '../lib/live';
import { useApp } from '../lib/session';
import { useNow } from '../lib/hooks';

export function useLiveStatus(): LiveStatus {
  const { live } = useApp();
  const [s, setS] = useState<LiveStatus>(live.status);
  useEffect(() => live.onStatus(setS), [live]);
  return s;
}

export function LiveIndicator() {
  const { live } = useApp();
  const s = useLiveStatus();
  const now = useNow(1000);
  let text: string;
  let tone: string;
  switch (s.state) {
    case 'open':
      text = 'Live';
      tone = 'ok';
      break;
    case 'connecting':
    case 'idle':
      text = 'Connecting…';
      tone = 'wait';
      break;
    case 'reconnecting': {
      const secs = s.retryAt ? Math.max(0, Math.ceil((s.retryAt - now) / 1000)) : 0;
      text = s.retryAt && secs > 0 ? `Reconnecting in ${secs} s` : 'Reconnecting…';
      tone = 'bad';
      break;
    }
    case 'refused':
      text = 'Live feed refused';
      tone = 'bad';
      break;
  }
  return (
    <div class={`live-indicator ${tone}`} role="status" aria-live="polite" data-state={s.state} title={s.reason ?? undefined}>
      <span class="dot" aria-hidden="true" />
      <span class="live-text">{text}</span>
      {s.state === 'reconnecting' && (
        <button type="button" class="btn tiny" onClick={() => live.reconnectNow()}>
          Reconnect
        </button>
      )}
    </div>
  );
}
