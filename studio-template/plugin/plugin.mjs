// The studio's Vite plugin: serves the component catalog, gives the app its
// sandbox settings as a virtual module, and tells open pages when the set of
// components or stories changed (a file added, removed or its exports edited).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { findEntry, earlyLoadScript } from './early-load.mjs';
import { hmrSequence } from './hmr-sequence.mjs';
import { PRELOAD_PATH, preloadMiddleware } from './preload.mjs';
import { recheckChanges } from './recheck-changes.mjs';
import { VERDICT_PATH, verdictMiddleware } from './verdict.mjs';

export const CATALOG_PATH = '/__studio/components.json';
export const CONFIG_MODULE = 'virtual:studio/config';
export const STORYBOOK_MODULE = 'virtual:studio/storybook';
export const CATALOG_EVENT = 'studio:catalog-changed';
const RESOLVED_CONFIG_MODULE = `\0${CONFIG_MODULE}`;
const RESOLVED_STORYBOOK_MODULE = `\0${STORYBOOK_MODULE}`;
// Without Storybook the app never imports the module, but Vite resolves the import all the same.
const NO_STORYBOOK = 'export const version = null;\nexport const loadTest = null;\nexport const annotations = [];\nexport const portable = {};\nexport const previewApi = {};\n';

// Editors and agents write a file several times in a burst (temp + rename,
// formatters): one rebuild after the burst is enough.
const REBUILD_DELAY_MS = 40;

/**
 * The part of the config the browser app sees (no filesystem details beyond
 * the /@fs/ base). `storybook` is the version of the repository's Storybook
 * when stories are composed with it (see storybook/), else null.
 */
export function clientConfig(config, storybook = null) {
  return {
    sandboxId: config.sandboxId,
    wsUrl: config.wsUrl,
    catalogUrl: `${config.base}${CATALOG_PATH.slice(1)}`,
    fsBase: `${config.base}@fs${config.repoRoot.split(path.sep).join('/')}/`,
    wrapper: config.wrapper,
    storybook: storybook ? { version: storybook.version } : null,
  };
}

/** `virtual:studio/storybook` as the page requests it. */
const storybookModuleUrl = (config) => `${config.base}@id/__x00__${STORYBOOK_MODULE}`;

/**
 * The modules whose lazy imports a first render waits for (preload.mjs): Storybook's
 * composition, whose test module Storybook 8 and 9's renderers import in beforeAll
 * (10's import it statically), before any story is composed. Storybook 7 has no
 * beforeAll: its test module is for play functions, loaded on request.
 */
function eagerModules(config, storybook) {
  const major = Number.parseInt(storybook?.project?.version ?? '', 10);
  return new Set(storybook?.project?.test && major >= 8 ? [storybookModuleUrl(config)] : []);
}

/**
 * The Vite plugin of Component Studio for the repository described by
 * `config`, serving `catalog` (see discover.mjs). `storybook` is the
 * repository's Storybook (storybook/load.mjs) with the code of its
 * `virtual:studio/storybook` module, or null.
 */
export function studioPlugin(config, catalog, storybook = null) {
  const client = clientConfig(config, storybook?.project);
  const preloadUrl = `${config.base}${PRELOAD_PATH.slice(1)}`;
  let current = null; // last catalog served, without generatedAt, to detect real changes
  let last = null; // the last catalog document built
  let entries = []; // index.html's module scripts, under the base

  const snapshot = () => {
    const doc = catalog.build();
    current = JSON.stringify(doc.components) + String(doc.preview);
    last = doc;
    return doc;
  };

  // What a page linked to `component` imports first (preload.mjs): the app, Storybook's
  // composition, the project setup, the component and its stories (URLs under the base).
  // `*`: every component's.
  const preloadRoots = (component) => {
    const doc = last ?? snapshot();
    const file = (rel) => encodeURI(client.fsBase + rel);
    const roots = [...entries];
    if (storybook) roots.push(storybookModuleUrl(config));
    if (doc.preview) roots.push(file(doc.preview));
    if (config.wrapper) roots.push(file(config.wrapper));
    const linked = component === '*' ? doc.components : [findEntry(doc.components, component)];
    for (const entry of linked) {
      if (entry && entry.exports.length > 0) roots.push(file(entry.module));
      if (entry?.storiesModule) roots.push(file(entry.storiesModule));
    }
    return roots;
  };

  let hmr = null; // the HMR message log (hmr-sequence.mjs), once the server is there

  return {
    name: 'component-studio',

    // after the other plugins' hooks: the modules Vite will update for the file
    hotUpdate: {
      order: 'post',
      handler(options) {
        if (this.environment?.name === 'client') hmr?.noteHotUpdate(options);
      },
    },

    resolveId(id) {
      if (id === CONFIG_MODULE) return RESOLVED_CONFIG_MODULE;
      return id === STORYBOOK_MODULE ? RESOLVED_STORYBOOK_MODULE : undefined;
    },

    load(id) {
      if (id === RESOLVED_CONFIG_MODULE) return `export default ${JSON.stringify(client)};\n`;
      return id === RESOLVED_STORYBOOK_MODULE ? (storybook?.code ?? NO_STORYBOOK) : undefined;
    },

    // the catalog and the deep-linked component's modules are asked for while the app still loads
    transformIndexHtml(html) {
      entries = Array.from(html.matchAll(/<script\b[^>]*\btype="module"[^>]*\bsrc="([^"]+)"/g), (m) =>
        m[1].startsWith(config.base) ? m[1] : `${config.base}${m[1].replace(/^\//, '')}`,
      );
      return [{ tag: 'script', children: earlyLoadScript(client.catalogUrl, preloadUrl, client), injectTo: 'head-prepend' }];
    },

    configureServer(server) {
      let timer = null;
      const rebuild = () => {
        timer = null;
        const before = current;
        try {
          snapshot();
        } catch (error) {
          server.config.logger.error(`component studio: catalog rebuild failed: ${error instanceof Error ? error.stack : error}`);
          return;
        }
        if (before !== null && before !== current) server.ws.send({ type: 'custom', event: CATALOG_EVENT, data: {} });
      };
      const onFile = (file) => {
        if (!catalog.isRelevant(file) || current === null) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(rebuild, REBUILD_DELAY_MS);
      };
      // Vite watches its root (.studio/) and the files pages loaded; new
      // components and stories appear elsewhere in the repository.
      const watched = catalog
        .watchedDirs()
        .map((rel) => path.join(config.repoRoot, rel))
        .filter((dir) => existsSync(dir));
      server.watcher.add(watched);
      server.watcher.on('add', onFile);
      server.watcher.on('unlink', onFile);
      server.watcher.on('change', onFile);
      const stopRechecks = recheckChanges(server.watcher);
      server.httpServer?.once('close', () => {
        if (timer) clearTimeout(timer);
        stopRechecks();
      });

      // what an edit did: compile errors and the stories it touches (verdict.mjs); under
      // Vite's base, as the catalog below
      hmr = hmrSequence(server);
      server.middlewares.use(`${config.base}${VERDICT_PATH.slice(1)}`, verdictMiddleware(server, config.repoRoot, catalog, hmr, config.storybookDir));
      server.middlewares.use(preloadUrl, preloadMiddleware(server, config.base, preloadRoots, eagerModules(config, storybook)));

      // Registered here, ahead of Vite's own middlewares, so it sees the URL with Vite's base.
      server.middlewares.use(client.catalogUrl, (req, res, next) => {
        if (req.method !== 'GET' && req.method !== 'HEAD') return next();
        let body;
        try {
          body = JSON.stringify(snapshot());
        } catch (error) {
          res.statusCode = 500;
          res.setHeader('Content-Type', 'application/json');
          res.end(JSON.stringify({ error: { code: 'catalog_failed', message: error instanceof Error ? error.message : String(error) } }));
          return;
        }
        res.setHeader('Content-Type', 'application/json');
        res.setHeader('Cache-Control', 'no-store');
        res.end(req.method === 'HEAD' ? undefined : body);
      });
    },
  };
}
