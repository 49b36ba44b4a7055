// The repository's Storybook in the studio's Vite server: the browser module
// that hands the app Storybook's portable-stories API, the repository's
// viteFinal applied over the studio's config, and previewHead/previewBody.
import { RENDERER } from './detect.mjs';

// Plugins of a Storybook preset that serve Storybook's own UI, not the stories:
// left out as Storybook's Vitest plugin leaves them out.
const STORYBOOK_ONLY_PLUGINS = new Set([
  'storybook:react-docgen-plugin',
  'vite:react-docgen-typescript',
  'storybook:package-deduplication',
  'storybook:mdx-plugin',
]);

/**
 * The `virtual:studio/storybook` module for `project` (see load.mjs): the
 * portable-stories API, Storybook's preview API and the addons' annotations.
 * Namespace imports: what a Storybook version lacks is then undefined, not a
 * module that fails to link.
 */
export function storybookModuleCode(project) {
  const lines = [
    `import * as portable from ${JSON.stringify(project.portable)};`,
    `import * as previewApi from ${JSON.stringify(project.previewApi)};`,
    ...project.annotations.map((specifier, index) => `import * as annotations${index} from ${JSON.stringify(specifier)};`),
    `export const version = ${JSON.stringify(project.version)};`,
    // only a page asked to play a story loads Testing Library
    `export const loadTest = ${project.test ? `() => import(${JSON.stringify(project.test)})` : 'null'};`,
    `export const annotations = [${project.annotations.map((_, index) => `annotations${index}`).join(', ')}];`,
    'export { portable, previewApi };',
  ];
  return lines.join('\n') + '\n';
}

/** What Vite must pre-bundle at startup so that the first page never finds a new dependency. */
export function storybookDeps(project) {
  const deps = [project.portable, RENDERER, project.previewApi, ...(project.test ? [project.test] : []), ...project.annotations];
  return [...new Set(deps.filter((specifier) => !specifier.startsWith('/')))];
}

/** The plugin that puts main's previewHead / previewBody into the studio page, as Storybook's iframe has them. */
export function previewHtmlPlugin(project) {
  return {
    name: 'component-studio:storybook-html',
    transformIndexHtml: (html) => html.replace('</head>', `${project.previewHead}</head>`).replace(/<body([^>]*)>/, (tag) => `${tag}${project.previewBody}`),
  };
}

async function flattenPlugins(plugins) {
  const flat = [];
  for (const plugin of await Promise.all(plugins ?? [])) {
    if (Array.isArray(plugin)) flat.push(...(await flattenPlugins(plugin)));
    else if (plugin) flat.push(plugin);
  }
  return flat;
}

const union = (...lists) => [...new Set(lists.flatMap((list) => list ?? []))];

/**
 * The studio's Vite config with the repository's viteFinal applied. viteFinal
 * gets the studio's config without its plugins (they stay first and out of
 * reach); what makes the studio work is kept from the studio's config: root,
 * base, cache, host/port, allowed and watched files, entries, React deduped.
 * A plugin of the same name as one of the studio's (a second React plugin) is
 * left out.
 */
export async function applyViteFinal(project, studio) {
  const studioPlugins = await flattenPlugins(studio.plugins);
  const given = { ...studio, plugins: [], resolve: { alias: {}, ...studio.resolve } };
  const final = (await project.viteFinal(given)) ?? given;
  const names = new Set(studioPlugins.map((p) => p.name));
  const added = (await flattenPlugins(final.plugins)).filter((p) => !names.has(p.name) && !STORYBOOK_ONLY_PLUGINS.has(p.name));
  const server = final.server ?? {};
  return {
    ...final,
    root: studio.root,
    base: studio.base,
    cacheDir: studio.cacheDir,
    clearScreen: studio.clearScreen,
    plugins: [...studioPlugins, ...added],
    resolve: { ...final.resolve, dedupe: union(studio.resolve?.dedupe, final.resolve?.dedupe) },
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
