// What an edit did to the studio, asked of Vite itself: whether the changed
// modules still compile, and which stories render them (the render verdict of
// the service's `"wait": "render"`, studio/render/).
//
// `GET /__studio/verdict?file=<repo-relative>&file=...` answers
//   {compile: [{message, file, line, column, frame, plugin}], targets: [{id, component, path}]}
// where `path` is the target's full-canvas route (`?full#/<component>/<story>`).
//
// Compile errors come from transforming the changed files (and, for a deleted
// file, the modules that import it) through Vite's own pipeline, the same
// transform whose failure a page receives as `vite:error` for its overlay:
// asked here the answer does not depend on whether a page's HMR socket was
// connected at the moment of the failure. A file whose change Vite's watcher
// reported and its HMR handled (it invalidated the file's modules then) is
// transformed as Vite holds it: the page's own hot update has usually
// transformed it already, and a failure is never cached. Any other file's
// modules are invalidated first, so that the transform reads the file as
// committed even when the watcher has not seen the change (yet).
//
// Affected stories come from Vite's module graph: every module that imports a
// changed file, transitively, and the catalog's entries whose component or
// stories module is among them. A module no page has loaded is not in the
// graph; the catalog still finds the stories of a changed component or
// stories file directly.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const VERDICT_PATH = '/__studio/verdict';
// Modules Vite transforms (the others, say a JSON or an image, have nothing to compile).
const COMPILED = /\.(m?[jt]sx?|css|scss|sass|less|mdx)$/;
// Never walk further up the importers than this (a cycle or a huge app).
const MAX_MODULES = 5000;

const toPosix = (file) => file.split(path.sep).join('/');

function graphOf(server) {
  const environment = server.environments?.client;
  return {
    graph: environment?.moduleGraph ?? server.moduleGraph,
    transform: (url) => (environment ? environment.transformRequest(url) : server.transformRequest(url)),
  };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const plain = (text) => String(text ?? '').replace(ANSI, '');

/**
 * `error` (a Rollup/Vite/Babel/Oxc error) as the verdict's compile error, with
 * `line` and `column` 1-based as an editor shows them. Oxc (Vite 8's
 * transform) throws one error holding `errors[]`, each with its own `loc` and
 * a message whose lines after the first are the code frame.
 */
export function compileError(error, fallbackFile) {
  const first = Array.isArray(error?.errors) && error.errors.length > 0 ? error.errors[0] : error;
  const loc = first?.loc ?? error?.loc ?? {};
  const [headline, ...rest] = plain(first?.message ?? error?.message ?? error)
    .replace(/^\[[A-Z_]+\]\s*/, '')
    .split('\n');
  const frame = typeof first?.frame === 'string' ? plain(first.frame) : typeof error?.frame === 'string' ? plain(error.frame) : rest.join('\n').trim() || null;
  return {
    message: headline.trim(),
    file: loc.file ?? first?.id ?? error?.id ?? fallbackFile,
    line: typeof loc.line === 'number' ? loc.line : null,
    column: typeof loc.column === 'number' ? loc.column + 1 : null,
    frame,
    plugin: typeof error?.plugin === 'string' ? error.plugin : null,
  };
}

/** Every module importing one of `files` (absolute), transitively, as absolute file paths. */
function importersOf(graph, files) {
  const seen = new Set();
  const found = new Set();
  const queue = [];
  for (const file of files) for (const mod of graph.getModulesByFile(file) ?? []) queue.push(mod);
  while (queue.length > 0 && seen.size < MAX_MODULES) {
    const mod = queue.pop();
    if (seen.has(mod)) continue;
    seen.add(mod);
    if (mod.file) found.add(mod.file);
    for (const importer of mod.importers) queue.push(importer);
  }
  return found;
}

// Relative module specifiers of a source file (static, dynamic and side-effect imports, re-exports).
const SPECIFIERS = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]*)['"]/g;

/**
 * The catalog's source files (components, stories, preview, wrapper) whose
 * relative imports name one of the deleted `files` (absolute): Vite drops a
 * deleted module from its graph when its watcher sees the unlink, importers
 * and all, so the graph may no longer know who imported it.
 */
function staticImporters(catalog, deleted) {
  const stems = new Set(deleted.map((file) => file.replace(/\.[^./]+$/, '')));
  const found = new Set();
  for (const source of catalog.sourceFiles()) {
    let text;
    try {
      text = readFileSync(source, 'utf8');
    } catch {
      continue;
    }
    for (const match of text.matchAll(SPECIFIERS)) {
      const target = path.resolve(path.dirname(source), match[1]);
      const stem = target.replace(/\.[^./]+$/, '');
      if (stems.has(target) || stems.has(stem) || stems.has(path.join(target, 'index'))) found.add(source);
    }
  }
  return found;
}

async function compile(server, graph, transform, repoRoot, files, fresh) {
  const errors = [];
  for (const file of files) {
    if (!COMPILED.test(file) || !existsSync(file)) continue;
    if (!fresh.has(file)) for (const mod of graph.getModulesByFile(file) ?? []) graph.invalidateModule(mod);
    try {
      await transform(`/@fs${toPosix(file)}`);
    } catch (error) {
      errors.push(compileError(error, toPosix(path.relative(repoRoot, file))));
    }
  }
  return errors;
}

/**
 * The verdict's Vite side for the changed repo-relative `rels`. `catalog`
 * is the studio's (discover.mjs); `storybookDir` the repository's
 * `.storybook` directory, whose changes affect every story; `fresh` the
 * changed files (absolute) whose change Vite's watcher and HMR already handled.
 */
export async function verdictFacts(server, repoRoot, catalog, rels, storybookDir = '.storybook', fresh = new Set()) {
  const { graph, transform } = graphOf(server);
  const changed = rels.map((rel) => path.join(repoRoot, rel));
  const importers = importersOf(graph, changed);
  // a deleted module's importers are compiled again: their import no longer resolves
  const deleted = changed.filter((file) => !existsSync(file));
  const direct = new Set();
  if (deleted.length > 0) {
    for (const file of deleted) for (const mod of graph.getModulesByFile(file) ?? []) for (const importer of mod.importers) if (importer.file) direct.add(importer.file);
    for (const file of staticImporters(catalog, deleted)) direct.add(file);
    for (const file of direct) importers.add(file);
  }
  const compileErrors = await compile(server, graph, transform, repoRoot, [...changed.filter((file) => existsSync(file)), ...direct], fresh);

  const touched = new Set([...rels.map(toPosix), ...[...importers].map((file) => toPosix(path.relative(repoRoot, file)))]);
  // the project's annotations (.storybook/preview and what it imports, say a
  // global stylesheet) are part of every story
  const everything = [...touched].some((rel) => rel.startsWith(`${storybookDir}/`));
  const targets = [];
  for (const component of catalog.build().components) {
    const hit = everything || touched.has(component.module) || (component.storiesModule !== null && touched.has(component.storiesModule));
    if (!hit) continue;
    if (component.stories.length === 0) {
      targets.push({ id: component.id, component: component.id, path: `?full#/${encodeURIComponent(component.id)}` });
      continue;
    }
    for (const story of component.stories) {
      // the hash route names the catalog's entries directly (iframe.html?id= wants
      // Storybook's own id, which a title can make differ from the catalog's)
      targets.push({ id: story.id, component: component.id, path: `?full#/${encodeURIComponent(component.id)}/${encodeURIComponent(story.exportName)}` });
    }
  }
  return { compile: compileErrors, targets };
}

// How long a verdict waits for Vite's watcher to report the changed files.
const WATCH_WAIT_MS = 2000;
const WATCH_POLL_MS = 5;

/**
 * When Vite's watcher last reported each file (absolute path -> ms since the
 * epoch). A verdict asked right after a commit may arrive before the watcher
 * event: until then Vite's cached file checks and module graph describe the
 * files as they were (a deleted module still resolves), so the verdict waits
 * for the event of each changed file written at or after `since`.
 */
export function watchTimes(watcher) {
  const seen = new Map();
  const note = (file) => seen.set(path.resolve(file), Date.now());
  for (const event of ['add', 'change', 'unlink']) watcher.on(event, note);
  const reported = (files, since) => files.every((file) => (seen.get(file) ?? 0) >= since);
  return {
    async waitFor(files, since, ms = WATCH_WAIT_MS) {
      return waitUntil(() => reported(files, since), ms);
    },
  };
}

/** Polls `done` until it holds or `ms` passed, then lets Vite's pending work go on; whether it held. */
async function waitUntil(done, ms) {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, WATCH_POLL_MS));
  // Vite's own handlers of the event ran first (registered before the plugins'): let their async part go on
  await new Promise((resolve) => setImmediate(resolve));
  return done();
}

/**
 * Whether Vite's watcher reports changes of `file`: a module in its graph (Vite
 * watches what it loaded) or a file under a directory the catalog watches. A
 * verdict waits for no event that will never come (a README, a file no page
 * imports outside those directories).
 */
function isWatched(server, repoRoot, catalog, file) {
  const { graph } = graphOf(server);
  if ((graph.getModulesByFile(file)?.size ?? 0) > 0) return true;
  return catalog.watchedDirs().some((rel) => file.startsWith(path.join(repoRoot, rel) + path.sep));
}

// How long a verdict waits for Vite's HMR to handle the changed files once the watcher saw them.
const HMR_WAIT_MS = 1000;

/**
 * A fingerprint of the catalog's components and stories: a page whose catalog
 * differs from the verdict's (a story added, an export renamed) must load
 * afresh, since Vite tells pages of such a change only after a debounce.
 */
function catalogFingerprint(doc) {
  return createHash('sha1').update(JSON.stringify(doc.components)).update(String(doc.preview)).digest('hex');
}

/**
 * The connect middleware answering VERDICT_PATH (`since`: ms since the epoch,
 * before the write). `hmr` (hmr-sequence.mjs): the answer's `hmr.seq` is the
 * last HMR message that is about the changed files (null when Vite's HMR did
 * not handle them in time), `catalog` the catalog's fingerprint; `storybookDir`
 * the repository's Storybook directory (studio config), whose changes affect every story.
 */
export function verdictMiddleware(server, repoRoot, catalog, hmr = null, storybookDir = '.storybook') {
  const times = watchTimes(server.watcher);
  return (req, res, next) => {
    if (req.method !== 'GET') return next();
    const query = new URL(req.url ?? '', 'http://studio.invalid').searchParams;
    const rels = query.getAll('file').filter((rel) => rel && !rel.startsWith('/') && !toPosix(rel).split('/').includes('..'));
    const since = Number.isFinite(Number(query.get('since') ?? 0)) ? Number(query.get('since') ?? 0) : 0;
    const answer = (status, body) => {
      res.statusCode = status;
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.end(JSON.stringify(body));
    };
    const watched = rels.map((rel) => path.join(repoRoot, rel)).filter((file) => isWatched(server, repoRoot, catalog, file));
    const facts = async () => {
      const asked = Date.now();
      const reported = await times.waitFor(watched, since);
      const seen = Date.now();
      const handled = hmr !== null && (await waitUntil(() => hmr.settled(watched, since), HMR_WAIT_MS));
      const seq = handled ? hmr.seq : null;
      const updated = Date.now();
      const fresh = new Set(reported && handled ? watched : []);
      const found = await verdictFacts(server, repoRoot, catalog, rels, storybookDir, fresh);
      // where the answer's time went (ms), for the benchmark's breakdown
      const timing = { asked: asked - since, watcher: seen - asked, hmr: updated - seen, facts: Date.now() - updated };
      return { ...found, hmr: { seq }, catalog: catalogFingerprint(catalog.build()), timing };
    };
    facts().then(
      (body) => answer(200, body),
      (error) => answer(500, { error: { code: 'verdict_failed', message: error instanceof Error ? error.message : String(error) } }),
    );
  };
}
