// How the repository's own build reaches the studio's Vite config, whatever
// builds it: its vite.config (plugins, aliases, define, css), the module paths
// of its jsconfig/tsconfig, Tailwind 4's source, and for an app built with
// webpack (Create React App, craco, a webpack Storybook) the Vite
// equivalents of what that build gives its code (webpack-app.mjs).
import { cjsInteropLegacy } from './cjs-interop.mjs';
import { jsxInJsPlugin } from './js-jsx.mjs';
import { readModulePaths, modulePathsPlugin } from './module-paths.mjs';
import { svgComponentPlugin } from './svg-component.mjs';
import { tailwindSourcePlugin } from './tailwind-source.mjs';
import { loadRepoViteConfig } from './vite-config.mjs';
import { craEnvDefine, cracoAliases, isWebpackApp } from './webpack-app.mjs';

/**
 * @typedef {object} RepoBuild
 * @property {string} repoRoot the repository (the package, in a monorepo): its modules get its React plugin's options
 * @property {string | null} viteConfigFile the repository's vite config, when one was loaded
 * @property {boolean} webpack whether the app is built with webpack (and the Vite equivalents apply)
 * @property {object} layer partial Vite config under the studio's: the repository's plugins,
 *   aliases, define, css (Storybook's viteFinal sees these, as under Storybook)
 * @property {object[]} plugins the studio's compatibility plugins, run before the repository's
 */

/**
 * The repository's build for `config` (studio.config.json). `storybook` is the
 * project loaded by storybook/load.mjs, or null: its framework tells a webpack
 * Storybook, and its webpackFinal's aliases apply.
 *
 * @returns {Promise<RepoBuild>}
 */
export async function prepareRepoBuild(config, storybook = null) {
  const { repoRoot } = config;
  const vite = await loadRepoViteConfig(repoRoot);
  const webpack = isWebpackApp(repoRoot, { hasViteConfig: vite !== null, storybookFramework: storybook?.framework ?? null });
  const layer = vite?.config ?? {};
  // CommonJS default imports as the repository's own build gives them (cjs-interop.mjs)
  layer.legacy = { ...cjsInteropLegacy(repoRoot), ...layer.legacy };
  const plugins = [tailwindSourcePlugin(repoRoot)];
  const modulePaths = readModulePaths(repoRoot);
  if (modulePaths) plugins.push(modulePathsPlugin(repoRoot, modulePaths));
  if (webpack) {
    // Storybook's aliases win over craco's for the same name, as `storybook dev` would see them
    const alias = [...(storybook?.webpackAliases ?? []), ...(await cracoAliases(repoRoot))];
    if (alias.length > 0) layer.resolve = { ...layer.resolve, alias };
    layer.define = { ...craEnvDefine(repoRoot), ...layer.define };
    plugins.push(jsxInJsPlugin(repoRoot), svgComponentPlugin(repoRoot));
  }
  return { repoRoot, viteConfigFile: vite?.file ?? null, webpack, layer, plugins };
}
