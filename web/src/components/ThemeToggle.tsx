import { useThemePref, type ThemePref } from '../lib/theme';

const THEME_NEXT: Record<ThemePref, ThemePref> = { system: 'light', light: 'dark', dark: 'system' };
const THEME_LABEL: Record<ThemePref, string> = { system: 'Theme: system', light: 'Theme: light', dark: 'Theme: dark' };

export function ThemeToggle() {
  const [pref, setPref] = useThemePref();
  return (
    <button
      type="button"
      class="btn small ghost theme-toggle"
      onClick={() => setPref(THEME_NEXT[pref])}
      aria-label={`${THEME_LABEL[pref]}. Switch to ${THEME_NEXT[pref]}.`}
      title={`${THEME_LABEL[pref]} (click for ${THEME_NEXT[pref]})`}
    >
      <svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
        {pref === 'dark' ? (
          <path class="icon" d="M20 14.5A8 8 0 0 1 9.5 4a8 8 0 1 0 10.5 10.5Z" />
        ) : pref === 'light' ? (
          <g class="icon">
            <circle cx="12" cy="12" r="4" />
            <path d="M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1 7 17M17 7l2.1-2.1" />
          </g>
        ) : (
          <path class="icon" d="M12 3a9 9 0 1 0 0 18V3Z M12 3a9 9 0 0 1 0 18" />
        )}
      </svg>
      <span class="theme-name">{pref}</span>
    </button>
  );
}
