// The studio's Vite config composed with the repository's: its build
// (repo-build/) under the studio's settings, and for a repository with
// Storybook the presets' viteFinal over that, in the order Storybook's Vite
// builder applies them.
import { mergeConfig } from 'vite';
import { isReactPlugin, repoReactPlugins } from './repo-build/react-options.mjs';

// Plugins of a Storybook preset that serve Storybook's own UI, not the stories:
// left out as Storybook's Vitest plugin leaves them out.
const STORYBOOK_ONLY_PLUGINS = new Set([
  'storybook:react-docgen-plugin',
  'vite:react-docgen-typescript',
  'storybook:package-deduplication',
  'storybook:mdx-plugin',
]);

const union = (...lists) => [...new Set(lists.flatMap((list) => list ?? []))];

/**
 * The studio's Vite config with the repository's build layered under it
 * (`repoBuild`, repo-build/index.mjs: its vite config's plugins, aliases,
 * define, css; the studio's compatibility plugins) and, for a repository with
 * Storybook, the presets' viteFinal over that, as Storybook's Vite builder
 * layers them. viteFinal gets the config without the studio's plugins (they
 * stay first and out of reach) but with the repository's, which it may filter
 * as under Storybook. What makes the studio work is kept from the studio's
 * config: root, base, cache, host/port, allowed and watched files, entries,
 * React deduped. A plugin of the same name as one of the studio's is left
 * out. So is the repository's React plugin (the studio's compiles JSX and
 * refreshes components): what its options add (a jsxImportSource, Babel
 * plugins) applies to the repository's modules in its place, as under Storybook.
 */
export async function composeConfig(studio, repoBuild, project = null) {
  const studioPlugins = await flattenPlugins(studio.plugins);
  const compatPlugins = repoBuild?.plugins ?? [];
  const base = { ...studio, plugins: [], resolve: { alias: {}, ...studio.resolve } };
  const given = repoBuild ? mergeConfig(base, repoBuild.layer) : base;
  given.resolve = { ...given.resolve, alias: aliasObject(given.resolve?.alias) };
  const final = (project ? await project.viteFinal(given) : given) ?? given;
  const names = new Set([...studioPlugins, ...compatPlugins].map((p) => p.name));
  const finalPlugins = await flattenPlugins(final.plugins);
  const reactPlugins = finalPlugins.filter(isReactPlugin);
  const reactOptions = repoBuild?.repoRoot ? await repoReactPlugins(reactPlugins, repoBuild.repoRoot, [studio.root, studio.cacheDir].filter(Boolean)) : [];
  // where the repository's React plugin was: before the plugins its config lists after it
  const added = finalPlugins.flatMap((p) => (p === reactPlugins[0] ? reactOptions : isReactPlugin(p) || names.has(p.name) || STORYBOOK_ONLY_PLUGINS.has(p.name) ? [] : [p]));
  const server = final.server ?? {};
  return {
    ...final,
    root: studio.root,
    base: studio.base,
    cacheDir: studio.cacheDir,
    clearScreen: studio.clearScreen,
    // the compatibility plugins run before the repository's (Tailwind's source before Tailwind)
    plugins: [...studioPlugins, ...compatPlugins, ...added],
    resolve: { ...final.resolve, dedupe: union(studio.resolve?.dedupe, final.resolve?.dedupe), tsconfigPaths: studio.resolve?.tsconfigPaths },
    optimizeDeps: {
      ...final.optimizeDeps,
      entries: union(studio.optimizeDeps?.entries, final.optimizeDeps?.entries),
      include: union(studio.optimizeDeps?.include, final.optimizeDeps?.include),
    },
    server: {
      ...server,
      host: studio.server.host,
      port: studio.server.port,
      strictPort: true,
      fs: { ...server.fs, strict: true, allow: union(studio.server.fs.allow, server.fs?.allow) },
      watch: studio.server.watch,
    },
  };
}

/**
 * Aliases as an object when every one is a plain name (what viteFinal
 * functions spread: `{ ...config.resolve.alias, x }`), else the array; the
 * first of two aliases of the same name wins, as in Vite's array form.
 */
export function aliasObject(alias) {
  if (!Array.isArray(alias)) return alias ?? {};
  if (!alias.every((entry) => typeof entry?.find === 'string' && !entry.customResolver)) return alias;
  const object = {};
  for (const { find, replacement } of alias) if (!(find in object)) object[find] = replacement;
  return object;
}

export async function flattenPlugins(plugins) {
  const flat = [];
  for (const plugin of await Promise.all(plugins ?? [])) {
    if (Array.isArray(plugin)) flat.push(...(await flattenPlugins(plugin)));
    else if (plugin) flat.push(plugin);
  }
  return flat;
}
