// The repository's own vite.config.*, loaded the way Storybook's Vite builder
// loads it (Vite's loadConfigFromFile, command `serve`, mode `development`):
// what its components need from it (plugins such as @tailwindcss/vite or
// vite-plugin-svgr, resolve.alias, define, css options) is layered under the
// studio's config, aliases to root-relative paths made absolute (Vite's root
// is .studio/ in a sandbox). What would make the studio's server the repository's app
// (root, server, build) is left out. Its React plugin is kept, as Storybook keeps
// it (main's viteFinal sees it): ../compose-config.mjs applies its options to the
// repository's modules through react-options.mjs.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfigFromFile } from 'vite';

const CONFIG_NAMES = ['vite.config.ts', 'vite.config.mts', 'vite.config.cts', 'vite.config.js', 'vite.config.mjs', 'vite.config.cjs'];

/** The repository's vite.config.* file, or null. */
export function findViteConfig(repoRoot) {
  return CONFIG_NAMES.map((name) => path.join(repoRoot, name)).find((file) => existsSync(file)) ?? null;
}

async function flatten(plugins) {
  const flat = [];
  for (const plugin of await Promise.all(plugins ?? [])) {
    if (Array.isArray(plugin)) flat.push(...(await flatten(plugin)));
    else if (plugin) flat.push(plugin);
  }
  return flat;
}

/**
 * `alias` with root-relative targets (`'@': '/src'`, which Vite reads from its
 * root: the repository under its own config, `.studio/` in the studio) made
 * absolute in the repository. A target that is an existing absolute path
 * stays as it is.
 */
export function rootedAliases(alias, repoRoot) {
  const root = (target) => (typeof target === 'string' && target.startsWith('/') && !existsSync(target) && existsSync(path.join(repoRoot, target)) ? path.join(repoRoot, target) : target);
  if (Array.isArray(alias)) return alias.map((entry) => (entry && typeof entry === 'object' ? { ...entry, replacement: root(entry.replacement) } : entry));
  return Object.fromEntries(Object.entries(alias).map(([find, target]) => [find, root(target)]));
}

/**
 * The part of a loaded vite config that applies to the studio: a partial
 * Vite config, its keys only those the studio takes.
 */
export async function pickRepoConfig(loaded, repoRoot) {
  const picked = {};
  const plugins = await flatten(loaded.plugins);
  if (plugins.length > 0) picked.plugins = plugins;
  if (loaded.resolve?.alias) picked.resolve = { alias: rootedAliases(loaded.resolve.alias, repoRoot) };
  if (loaded.resolve?.extensions) picked.resolve = { ...picked.resolve, extensions: loaded.resolve.extensions };
  for (const key of ['define', 'css', 'json', 'assetsInclude', 'envPrefix']) {
    if (loaded[key] !== undefined) picked[key] = loaded[key];
  }
  if (loaded.optimizeDeps?.include) picked.optimizeDeps = { include: loaded.optimizeDeps.include };
  return picked;
}

/**
 * The applicable part of the repository's vite config (see pickRepoConfig),
 * or null when it has none. A config that fails to load (a plugin not
 * installed, a syntax error) is reported and left out: the studio still
 * serves the components, without what that config adds.
 */
export async function loadRepoViteConfig(repoRoot) {
  const file = findViteConfig(repoRoot);
  if (!file) return null;
  let loaded;
  try {
    const env = { command: 'serve', mode: 'development', isSsrBuild: false, isPreview: false };
    loaded = await loadConfigFromFile(env, file, repoRoot, 'silent');
  } catch (error) {
    console.error(`component studio: could not load ${file}, its plugins and aliases are not applied: ${error instanceof Error ? error.message : error}`);
    return null;
  }
  return loaded ? { file, config: await pickRepoConfig(loaded.config, repoRoot) } : null;
}
