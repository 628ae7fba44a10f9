// Light and dark themes: the system's preference unless the user picked one (kept in
// localStorage — a display preference, nothing secret). The choice is applied as
// `data-theme` on <html>; the stylesheet's custom properties follow it.

import { useEffect, useState } from 'preact/hooks';

export type ThemePref = 'system' | 'light' | 'dark';
export type Theme = 'light' | 'dark';

const KEY = 'eddy.theme';
const EVENT = 'eddy:themechange';
const media = () => window.matchMedia('(prefers-color-scheme: dark)');

export function themePref(): ThemePref {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : 'system';
  } catch {
    return 'system';
  }
}

export function effectiveTheme(pref: ThemePref = themePref()): Theme {
  if (pref !== 'system') return pref;
  return media().matches ? 'dark' : 'light';
}

/** Applies the preference to the document (called at start and on every change). */
export function applyTheme(): void {
  const theme = effectiveTheme();
  document.documentElement.dataset.theme = theme;
}

export function setThemePref(pref: ThemePref): void {
  try {
    if (pref === 'system') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, pref);
  } catch {
    // Not kept across visits, but applied now.
  }
  applyTheme();
  window.dispatchEvent(new Event(EVENT));
}

/** Follows the system's preference while the user has not picked one. */
export function watchSystemTheme(): void {
  media().addEventListener('change', () => {
    applyTheme();
    window.dispatchEvent(new Event(EVENT));
  });
}

/** The theme in force, re-rendering when it changes (charts read their colours from it). */
export function useTheme(): Theme {
  const [theme, setTheme] = useState<Theme>(() => effectiveTheme());
  useEffect(() => {
    const on = () => setTheme(effectiveTheme());
    window.addEventListener(EVENT, on);
    return () => window.removeEventListener(EVENT, on);
  }, []);
  return theme;
}

export function useThemePref(): [ThemePref, (p: ThemePref) => void] {
  const [pref, setPref] = useState<ThemePref>(() => themePref());
  useEffect(() => {
    const on = () => setPref(themePref());
    window.addEventListener(EVENT, on);
    return () => window.removeEventListener(EVENT, on);
  }, []);
  return [pref, setThemePref];
}
