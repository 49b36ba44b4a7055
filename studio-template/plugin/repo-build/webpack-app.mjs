// Apps built with webpack (Create React App, craco, react-app-rewired, a
// webpack Storybook): what their build gives their code that Vite does not,
// read without running webpack. Covered: craco.config.* `webpack.alias`,
// aliases a webpack Storybook's webpackFinal adds (storybook/webpack-final.mjs),
// and CRA's `process.env` (NODE_ENV, PUBLIC_URL, REACT_APP_* from the .env
// files and the environment; STORYBOOK_* too, as Storybook defines them).
// Not covered: other webpack config (loaders, plugins, react-app-rewired's
// config-overrides.js, craco's `configure` function): their effect is not a
// value that can be read.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadEnv } from 'vite';

const WEBPACK_BUILDERS = ['react-scripts', '@craco/craco', 'craco', 'react-app-rewired', 'customize-cra', 'webpack'];
const CRACO_CONFIGS = ['craco.config.js', 'craco.config.cjs', 'craco.config.mjs', '.cracorc.js', '.cracorc'];
// Storybook frameworks and presets that build with webpack.
export const WEBPACK_STORYBOOK = /@storybook\/(react-webpack5|preset-create-react-app|nextjs)(\/|$)/;

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Whether the repository's app is built with webpack rather than Vite: it has
 * no vite.config and depends on a webpack build tool, or its Storybook builds
 * with webpack (`storybookFramework`, the name main's framework gives).
 */
export function isWebpackApp(repoRoot, { hasViteConfig, storybookFramework }) {
  if (hasViteConfig) return false;
  if (storybookFramework && WEBPACK_STORYBOOK.test(storybookFramework)) return true;
  const manifest = readJson(path.join(repoRoot, 'package.json')) ?? {};
  const deps = { ...manifest.dependencies, ...manifest.devDependencies };
  return WEBPACK_BUILDERS.some((name) => name in deps) || CRACO_CONFIGS.some((name) => existsSync(path.join(repoRoot, name)));
}

/**
 * Webpack's `resolve.alias` as Vite aliases: a `name$` key matches the name
 * exactly (webpack's syntax), other keys the name and `name/...`, as in both.
 * Relative targets are taken from `baseDir`; `false` (ignore a module) and
 * arrays of fallbacks are left out.
 */
export function viteAliases(alias, baseDir) {
  const entries = Array.isArray(alias) ? alias.map((a) => [a?.name, a?.alias]) : Object.entries(alias ?? {});
  const result = [];
  for (const [key, target] of entries) {
    if (typeof key !== 'string' || typeof target !== 'string') continue;
    const replacement = target.startsWith('.') ? path.resolve(baseDir, target) : target;
    if (key.endsWith('$')) {
      result.push({ find: new RegExp(`^${escapeRegExp(key.slice(0, -1))}$`), replacement });
    } else {
      result.push({ find: key, replacement });
    }
  }
  return result;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The `webpack.alias` of the repository's craco config, loaded as craco
 * loads it (a module exporting an object, or a function of `{ env }`), or []
 * without one. A config that fails to load (it requires a package that is not
 * installed, say) is reported and skipped.
 */
export async function cracoAliases(repoRoot) {
  const file = CRACO_CONFIGS.map((name) => path.join(repoRoot, name)).find((candidate) => existsSync(candidate));
  if (!file || file.endsWith('.cracorc')) return [];
  try {
    const mod = await import(pathToFileURL(file).href);
    let config = mod.default ?? mod;
    if (typeof config === 'function') config = await config({ env: 'development', paths: {} });
    return viteAliases(config?.webpack?.alias, repoRoot);
  } catch (error) {
    console.error(`component studio: could not load ${file}, its aliases are not applied: ${error instanceof Error ? error.message : error}`);
    return [];
  }
}

/**
 * Vite `define` entries for what Create React App's build inlines: the
 * `process.env.X` reads, and `process.env` as a whole for code that
 * destructures it.
 */
export function craEnvDefine(repoRoot) {
  const env = {
    ...loadEnv('development', repoRoot, ['REACT_APP_', 'STORYBOOK_']),
    NODE_ENV: 'development',
    PUBLIC_URL: '',
  };
  const define = { 'process.env': JSON.stringify(env) };
  for (const [key, value] of Object.entries(env)) define[`process.env.${key}`] = JSON.stringify(value);
  return define;
}
