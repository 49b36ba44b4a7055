// The repository's own React plugin options, for its own modules. Storybook's
// react-vite preset keeps the React plugin of the repository's vite config
// (or of main's viteFinal), so its stories are built with that plugin's
// `jsxImportSource` and `babel` options: emotion's `css` prop and its babel
// plugin's component selectors (`${Child}:hover &`) depend on them. The studio
// keeps its own @vitejs/plugin-react 6 (JSX, Fast Refresh, HMR, for its own
// app files as well) and applies what the repository's plugin adds on the
// repository's modules only:
// - its Babel step, run by the repository's own plugin instance (plugin-react
//   3 to 5, with the repository's @babel/core and Babel plugins), told that
//   Fast Refresh is not its job: the studio's React plugin adds it after;
// - its JSX runtime (`jsxImportSource`, classic or automatic), compiled with
//   Vite's Oxc before the studio's transform, which then only adds Fast Refresh.
import path from 'node:path';
import { transformWithOxc } from 'vite';

// @vitejs/plugin-react (vite:react-babel, vite:react-refresh, vite:react-jsx,
// vite:react:refresh-wrapper, ...) and plugin-react-swc (vite:react-swc).
const REACT_PLUGIN = /^vite:react[-:]/;
const BABEL_PLUGIN = 'vite:react-babel';
const JSX_FILE = /\.[jt]sx$/;

export const isReactPlugin = (plugin) => REACT_PLUGIN.test(plugin?.name ?? '');

/** A hook of a plugin, whether given as a function or as `{ handler }`. */
function hookOf(plugin, name) {
  const hook = plugin[name];
  return typeof hook === 'function' ? hook : typeof hook?.handler === 'function' ? hook.handler : null;
}

/**
 * `{ runtime, importSource }` of a React plugin's JSX, read from the config its
 * `config` hook gives Vite: esbuild's `jsx`/`jsxImportSource` (plugin-react 3
 * to 5 on Vite 4 to 7) or Oxc's `jsx` (plugin-react 5 on rolldown-vite, 6).
 * Null when it sets nothing of the kind.
 */
export async function reactJsxOptions(babelPlugin, repoRoot) {
  const hook = hookOf(babelPlugin, 'config');
  if (!hook) return null;
  const given = await hook.call({}, { root: repoRoot }, { command: 'serve', mode: 'development', isSsrBuild: false, isPreview: false });
  const esbuild = given?.esbuild;
  const oxc = given?.oxc?.jsx;
  if (esbuild && (esbuild.jsx || esbuild.jsxImportSource)) {
    return { runtime: esbuild.jsx === 'transform' ? 'classic' : 'automatic', importSource: esbuild.jsxImportSource ?? null };
  }
  if (oxc && typeof oxc === 'object') return { runtime: oxc.runtime === 'classic' ? 'classic' : 'automatic', importSource: oxc.importSource ?? null };
  return null;
}

/**
 * The repository's Babel step: its plugin instance's own `transform`, after
 * its `configResolved` saw the studio's resolved config with the repository
 * as root and no Fast Refresh (command `build`, `server.hmr` off: plugin-react
 * 3 to 5 then run only the repository's `babel` options). Babel resolves plugin
 * names given by name from its `cwd`, which under Storybook is the repository:
 * plugin-react's own `api.reactBabel` extension point sets it.
 */
function repoBabelPlugin(babelPlugin, repoRoot, isRepoModule) {
  let transform = null;
  const babelCwd = { name: 'component-studio:repo-babel-cwd', api: { reactBabel: (babelOptions) => void (babelOptions.cwd = repoRoot) } };
  const run = async (code, id, options) => (transform && isRepoModule(id) ? ((await transform(code, id, options)) ?? null) : null);
  return {
    name: 'component-studio:repo-react-babel',
    enforce: 'pre',
    // The dependency scan reads the repository's modules through its Babel too: what
    // its plugins import (emotion's `@emotion/styled/base`) is pre-bundled at startup
    // instead of found on first render (a 504 and a reload).
    config: () => ({ optimizeDeps: { rolldownOptions: { plugins: [{ name: 'component-studio:repo-react-babel-scan', transform: (code, id) => run(code, id, { ssr: false }) }] } } }),
    configResolved(config) {
      const configResolved = hookOf(babelPlugin, 'configResolved');
      const seen = { ...config, root: repoRoot, command: 'build', plugins: [babelCwd], server: { ...config.server, hmr: false }, build: { ...config.build, sourcemap: false } };
      try {
        configResolved?.call({}, seen);
        // read after configResolved: plugin-react 4 and 5 drop their transform when Babel has nothing to do
        transform = hookOf(babelPlugin, 'transform');
      } catch (error) {
        config.logger.error(`component studio: the repository's React plugin (${BABEL_PLUGIN}) could not be set up, its babel options are not applied: ${error instanceof Error ? error.message : error}`);
      }
    },
    transform: (code, id, options) => run(code, id, options),
  };
}

/**
 * The repository's JSX runtime on its .jsx/.tsx modules, compiled before the
 * studio's transform (which compiles the studio's own files with React's).
 * The dependency scan reads sources with React's runtime: the other runtime's
 * entries are pre-bundled by name.
 */
function repoJsxPlugin({ runtime, importSource }, isRepoModule) {
  let development = true;
  return {
    name: 'component-studio:repo-jsx-runtime',
    enforce: 'pre',
    config: () => (importSource && runtime === 'automatic' ? { optimizeDeps: { include: [`${importSource}/jsx-runtime`, `${importSource}/jsx-dev-runtime`] } } : {}),
    configResolved(config) {
      development = !config.isProduction;
    },
    async transform(code, id) {
      const file = id.split('?')[0];
      if (!JSX_FILE.test(file) || !isRepoModule(id)) return null;
      const jsx = { runtime, development, refresh: false, ...(importSource ? { importSource } : {}) };
      const result = await transformWithOxc(code, file, { lang: file.endsWith('.tsx') ? 'tsx' : 'jsx', jsx, sourcemap: true });
      return { code: result.code, map: result.map };
    },
  };
}

/**
 * The studio's plugins that apply `reactPlugins` (the repository's React
 * plugin instances, from its vite config or main's viteFinal) to the
 * repository's modules under `repoRoot`, never to files under `excluded`
 * (the studio's own app, Vite's cache) nor node_modules: empty when they add
 * nothing to what the studio's own React plugin does.
 */
export async function repoReactPlugins(reactPlugins, repoRoot, excluded = []) {
  const babelPlugin = reactPlugins.find((plugin) => plugin.name === BABEL_PLUGIN);
  if (!babelPlugin) return [];
  const inside = (dir, file) => file.startsWith(dir + path.sep);
  const isRepoModule = (id) => inside(repoRoot, id) && !id.includes(`${path.sep}node_modules${path.sep}`) && !excluded.some((dir) => inside(dir, id));
  const plugins = [];
  if (hookOf(babelPlugin, 'transform')) plugins.push(repoBabelPlugin(babelPlugin, repoRoot, isRepoModule));
  const jsx = await reactJsxOptions(babelPlugin, repoRoot);
  if (jsx && (jsx.runtime === 'classic' || (jsx.importSource && jsx.importSource !== 'react'))) plugins.push(repoJsxPlugin(jsx, isRepoModule));
  return plugins;
}
