// Reads studio.config.json, the file the backend writes beside vite.config.mjs
// when it materialises .studio/ in a sandbox worktree. Everything the renderer
// needs to know about its sandbox comes from here; nothing is read from the
// repository's own Vite config.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const CONFIG_FILE = 'studio.config.json';
export const DEFAULT_COMPONENT_GLOB = 'src/**/*.{tsx,jsx}';
export const DEFAULT_STORYBOOK_DIR = '.storybook';

/**
 * @typedef {object} StudioConfig
 * @property {string | null} sandboxId
 * @property {string} repoRoot absolute path of the package the studio renders (the worktree, or
 *   the package directory of a workspace inside it)
 * @property {string} workspaceRoot absolute path of the worktree holding repoRoot (the same
 *   directory unless repoRoot is a workspace package): Vite may serve its files
 * @property {number} port
 * @property {string} host
 * @property {string} cacheDir absolute path of Vite's per-sandbox cache
 * @property {string | null} wsUrl live event stream of the sandbox (a ws(s):// URL, or a path on the
 *   page's own origin: the renderer proxy's), or null
 * @property {string} base the URL path the renderer is served under ('/' alone; '/r/<sandbox id>/'
 *   behind the API's renderer proxy): Vite's base
 * @property {string | null} proxySecret what every request must carry in x-studio-proxy-secret (the
 *   proxy adds it; see proxy-guard.mjs), or null to serve anyone who reaches the port
 * @property {string} componentGlob repo-relative glob of component modules
 * @property {string | null} wrapper repo-relative module whose default export wraps every render
 * @property {string | null} depsSeedDir absolute directory where the node's sandboxes share Vite's
 *   pre-bundled dependencies (see deps-seed.mjs), or null to optimise them in this sandbox alone
 * @property {string} storybookDir repo-relative Storybook config directory (main.*, preview.*)
 */

function fail(file, message) {
  throw new Error(`component studio: ${file}: ${message}`);
}

function optionalString(raw, key, file) {
  const value = raw[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value === '') fail(file, `"${key}" must be a non-empty string or null`);
  return value;
}

/**
 * Loads and validates the studio config of the .studio directory `studioDir`.
 *
 * Without a config file (the template run on its own, e.g. `npm run dev`), the
 * parent directory is taken as the repository and defaults apply, so that the
 * template can be developed without a backend.
 *
 * @param {string} studioDir
 * @returns {StudioConfig}
 */
export function loadStudioConfig(studioDir) {
  const file = path.join(studioDir, CONFIG_FILE);
  /** @type {Record<string, unknown>} */
  let raw = {};
  if (existsSync(file)) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      fail(file, `not valid JSON (${error instanceof Error ? error.message : String(error)})`);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(file, 'must hold a JSON object');
  }
  const repoRoot = path.resolve(studioDir, optionalString(raw, 'repoRoot', file) ?? '..');
  const workspaceRoot = path.resolve(studioDir, optionalString(raw, 'workspaceRoot', file) ?? repoRoot);
  if (path.relative(workspaceRoot, repoRoot).split(path.sep).includes('..')) {
    fail(file, `"repoRoot" must lie inside "workspaceRoot", got ${repoRoot} outside ${workspaceRoot}`);
  }
  const port = raw.port ?? 5173;
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(file, `"port" must be an integer in 1..65535, got ${JSON.stringify(port)}`);
  const componentGlob = optionalString(raw, 'componentGlob', file) ?? DEFAULT_COMPONENT_GLOB;
  if (path.isAbsolute(componentGlob) || componentGlob.split('/').includes('..')) {
    fail(file, `"componentGlob" must be relative to the repository and stay inside it, got ${componentGlob}`);
  }
  const wrapper = optionalString(raw, 'wrapper', file);
  if (wrapper !== null && (path.isAbsolute(wrapper) || wrapper.split('/').includes('..'))) {
    fail(file, `"wrapper" must be a path relative to the repository, got ${wrapper}`);
  }
  const storybookDir = optionalString(raw, 'storybookDir', file) ?? DEFAULT_STORYBOOK_DIR;
  if (path.isAbsolute(storybookDir) || storybookDir.split('/').includes('..')) {
    fail(file, `"storybookDir" must be a path relative to the repository that stays inside it, got ${storybookDir}`);
  }
  const wsUrl = optionalString(raw, 'wsUrl', file);
  if (wsUrl !== null && !/^(wss?:\/\/|\/)/.test(wsUrl)) fail(file, `"wsUrl" must be a ws:// or wss:// URL or an absolute path, got ${wsUrl}`);
  const base = optionalString(raw, 'base', file) ?? '/';
  if (!/^\/([^/?#]+\/)*$/.test(base)) fail(file, `"base" must be a URL path that starts and ends with "/", got ${base}`);
  const proxySecret = optionalString(raw, 'proxySecret', file);
  const depsSeedDir = optionalString(raw, 'depsSeedDir', file);
  if (depsSeedDir !== null && !path.isAbsolute(depsSeedDir)) fail(file, `"depsSeedDir" must be an absolute path, got ${depsSeedDir}`);
  return {
    sandboxId: optionalString(raw, 'sandboxId', file),
    repoRoot,
    workspaceRoot,
    port,
    host: optionalString(raw, 'host', file) ?? '127.0.0.1',
    cacheDir: path.resolve(studioDir, optionalString(raw, 'cacheDir', file) ?? '.vite-cache'),
    wsUrl,
    base,
    proxySecret,
    componentGlob,
    wrapper,
    depsSeedDir,
    storybookDir: storybookDir.replace(/\/+$/, ''),
  };
}
