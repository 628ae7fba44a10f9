import { defineConfig } from 'vitest/config';
import preact from '@preact/preset-vite';

// Where `npm run dev` / `npm run preview` send API calls: a running `eddy` (see README.md).
const api = process.env.EDDY_API ?? 'http://127.0.0.1:18480';

// The Content-Security-Policy the eddy binary sends with the dashboard. `vite preview` sends
// it too, so the built app is tried under the same rules (no inline scripts or styles).
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; font-src 'self'; object-src 'none'; base-uri 'none'; " +
  "form-action 'self'; frame-ancestors 'none'";

// The server's own paths the dashboard calls. `changeOrigin` stays off: the WebSocket route
// accepts a browser whose Origin matches the Host it was asked on, which is then Vite's.
const proxy = Object.fromEntries(
  ['/api', '/lag', '/ready', '/health', '/stats'].map((p) => [
    p,
    { target: api, ws: p === '/api', changeOrigin: false },
  ]),
);

export default defineConfig({
  base: '/',
  plugins: [preact()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    chunkSizeWarningLimit: 400,
  },
  server: { host: '127.0.0.1', port: 5173, strictPort: true, proxy },
  preview: {
    host: '127.0.0.1',
    port: 4173,
    strictPort: true,
    proxy,
    headers: { 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
  },
});
