// The signed-in key: kept in sessionStorage only (gone when the tab closes; never in a URL,
// never logged), with the tenant and scopes `GET /api/v1/whoami` tells.

import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { api, ApiError } from './api';
import type { LiveClient } from './live';
import type { Scope, Whoami } from './types';

const STORAGE_KEY = 'eddy.apiKey';

export interface Session {
  key: string;
  who: Whoami;
}

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string | null): void {
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage refused (private mode quotas): the key then lives for this page only.
  }
}

/** Asks who `key` is; a refused key throws the server's `ApiError` (401). */
export async function whoami(key: string): Promise<Whoami> {
  return api<Whoami>('/api/v1/whoami', { key, expectUnauthorized: true });
}

/** How the header names the key's tenant: its name, else (deleted, older server) its id. */
export function tenantLabel(who: Pick<Whoami, 'tenant_id' | 'tenant_name'>): string {
  return who.tenant_name || who.tenant_id;
}

/** The tenant in a sentence: `acme (tn_…)`, or the id alone when there is no name. */
export function tenantName(who: Pick<Whoami, 'tenant_id' | 'tenant_name'>): string {
  const label = tenantLabel(who);
  return label === who.tenant_id ? label : `${label} (${who.tenant_id})`;
}

export function hasScope(who: Whoami | null | undefined, scope: Scope): boolean {
  return !!who && who.scopes.includes(scope);
}

export interface AppContext {
  session: Session;
  live: LiveClient;
  signOut: (message?: string) => void;
}

export const Ctx = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const c = useContext(Ctx);
  if (!c) throw new Error('useApp outside the signed-in app');
  return c;
}

export { ApiError };
