// Refuses every request that does not come through the API's renderer proxy.
//
// On a cluster a sandbox's Vite listens on its node's address, where anyone
// who can reach the node could ask it for the worktree's source. The API's
// proxy (serve/renderer_proxy.py) is the only client meant to reach it: it
// authenticates the sandbox's owner, then adds the sandbox's proxy secret
// (studio.config.json's proxySecret) in PROXY_SECRET_HEADER. Without that
// header, with the wrong value, an HTTP request gets a 403 and a WebSocket
// upgrade (Vite's HMR included) is refused before it is accepted.
//
// The check wraps the HTTP server's emit, not a middleware: connect
// middlewares and upgrade listeners added by any plugin, before or after this
// one, are all behind it.
import { timingSafeEqual } from 'node:crypto';

export const PROXY_SECRET_HEADER = 'x-studio-proxy-secret';
const REFUSAL = 'this Vite serves only through the Component Studio API: open the sandbox\'s renderer_url';

function matches(expected, given) {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Guards `httpServer` (Node's http.Server) with `secret`; returns a function that removes the guard. */
export function guardServer(httpServer, secret) {
  const emit = httpServer.emit;
  httpServer.emit = function guardedEmit(event, req, target, ...rest) {
    if ((event === 'request' || event === 'upgrade') && !matches(secret, req.headers[PROXY_SECRET_HEADER])) {
      if (event === 'request') {
        target.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
        target.end(`403 Forbidden: ${REFUSAL}\n`);
      } else {
        target.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${REFUSAL}\n`);
      }
      return true;
    }
    return emit.call(this, event, req, target, ...rest);
  };
  return () => {
    httpServer.emit = emit;
  };
}

/** The Vite plugin: guards the dev server when the sandbox has a proxy secret (nothing otherwise). */
export function proxyGuardPlugin(secret) {
  return {
    name: 'component-studio:proxy-guard',
    enforce: 'pre',
    apply: 'serve',
    configureServer(server) {
      if (secret && server.httpServer) guardServer(server.httpServer, secret);
    },
  };
}
