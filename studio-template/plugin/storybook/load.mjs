// Loads the repository's Storybook configuration with its own Storybook, the
// way its Vitest plugin does: `.storybook/main` and the presets of its addons
// and framework, through `loadAllPresets`. From them the studio takes the
// preview annotations of the addons (`<addon>/preview`, or what an addon's
// preset adds), `viteFinal`, previewHead/previewBody, `stories` and
// `staticDirs`. Only imported for a repository that has Storybook (see
// detect.mjs).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RENDERER } from './detect.mjs';
import { staticDirMappings } from './static-dirs.mjs';
import { webpackFinalAliases } from './webpack-final.mjs';

// Where each part lives, newest Storybook first: 9+ publishes `storybook/preview-api`,
// 8.2+ has everything under `storybook/internal/*`, 7 had separate packages.
const PRESET_LOADERS = ['storybook/internal/common', '@storybook/core-common'];
const PREVIEW_APIS = ['storybook/preview-api', 'storybook/internal/preview-api', '@storybook/preview-api'];
// Testing Library for play functions (`canvas`, `userEvent`): part of Storybook 9+, a package of its own in 8.
const TEST_MODULES = ['storybook/test', '@storybook/test'];
// Storybook 7's default feature flags (its core preset's), for a repository without main.
// Without `storyStoreV7` its renderer starts Storybook's whole legacy preview when imported.
const STORYBOOK7_FEATURES = { storyStoreV7: true, argTypeTargetsV7: true, legacyDecoratorFileOrder: false };
// Frameworks whose own package exports portable stories with the framework's
// annotations (mocks of next/router, next/image...): composed through them.
const PORTABLE_FRAMEWORKS = /^@storybook\/(nextjs|nextjs-vite|experimental-nextjs-vite)$/;

/**
 * @typedef {object} StorybookProject
 * @property {string} version installed version of the React renderer
 * @property {string} portable module of the portable-stories API (setProjectAnnotations, composeStory)
 * @property {string} previewApi module of Storybook's preview API (addons channel, hooks)
 * @property {string | null} test module of Storybook's Testing Library (`within`, `userEvent`) for play functions, or null
 * @property {string[]} annotations modules of the addons' preview annotations, in Storybook's order
 * @property {string[]} stories repo-relative globs of main's `stories` (the catalog looks there too)
 * @property {{ from: string, to: string }[]} staticDirs main's `staticDirs` inside the repository (static-dirs.mjs)
 * @property {string} previewHead HTML for <head> (main's previewHead), or ''
 * @property {string} previewBody HTML for the start of <body> (main's previewBody), or ''
 * @property {(config: object) => Promise<object>} viteFinal the presets' viteFinal (main's, the addons', the framework's)
 * @property {string | null} framework the name of main's framework (`@storybook/react-vite`, `@storybook/react-webpack5`...)
 * @property {{ find: string | RegExp, replacement: string }[]} webpackAliases aliases main's webpackFinal adds (webpack-final.mjs)
 * @property {object | null} features Storybook 7's feature flags (main's `features` over its defaults), which its
 *   preview reads from `window.FEATURES`; null for Storybook 8+
 */

const toPosix = (p) => p.split(path.sep).join('/');

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

function readText(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The package directory and manifest a file belongs to (the nearest package.json with a name). */
function owningPackage(file) {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = readJson(path.join(dir, 'package.json'));
    if (manifest && typeof manifest.name === 'string') return { dir, manifest };
  }
  return null;
}

function targetsOf(entry) {
  if (typeof entry === 'string') return [entry];
  if (entry && typeof entry === 'object') return Object.values(entry).flatMap(targetsOf);
  return [];
}

/**
 * The bare specifier a package exports `file` under (`@storybook/addon-themes/preview`
 * for its dist/preview.js), or null. Vite pre-bundles what is imported by a bare
 * specifier; a file imported by its path would be served module by module.
 */
export function bareSpecifier(file) {
  const owner = owningPackage(file);
  if (!owner) return null;
  const { dir, manifest } = owner;
  const rel = `./${toPosix(path.relative(dir, file))}`;
  const { exports } = manifest;
  if (exports === undefined) return `${manifest.name}/${rel.slice(2)}`;
  const map = typeof exports === 'string' || Object.keys(exports).some((key) => !key.startsWith('.')) ? { '.': exports } : exports;
  for (const [subpath, entry] of Object.entries(map)) {
    if (subpath.includes('*')) continue;
    if (targetsOf(entry).some((target) => path.posix.normalize(target) === path.posix.normalize(rel))) {
      return subpath === '.' ? manifest.name : `${manifest.name}${subpath.slice(1)}`;
    }
  }
  return null;
}

async function importResolved(resolved) {
  const mod = await import(pathToFileURL(resolved).href);
  // a CommonJS build whose names Node could not list sits on `default`
  return mod.default && typeof mod.default === 'object' ? { ...mod.default, ...mod } : mod;
}

const frameworkName = (framework) => (typeof framework === 'string' ? framework : framework?.name ?? null);

/** The absolute file of one `previewAnnotations` entry of Storybook's presets. */
function annotationFile(entry, resolveFromConfig) {
  const value = entry && typeof entry === 'object' ? entry.absolute : entry;
  if (typeof value !== 'string') return null;
  return path.isAbsolute(value) ? value : resolveFromConfig(value);
}

/**
 * Repo-relative globs of main's `stories` entries, normalised by Storybook
 * (`'../src/**\/*.stories.tsx'`, `{ directory, files }`). Entries outside the
 * repository are left out (the catalog reads the worktree only); MDX files are
 * left out by the catalog, which reads CSF.
 */
export function storyGlobs(entries, normalizeStories, { configDir, repoRoot }) {
  if (!Array.isArray(entries) || entries.length === 0 || typeof normalizeStories !== 'function') return [];
  let normalized;
  try {
    normalized = normalizeStories(entries, { configDir, workingDir: repoRoot });
  } catch (error) {
    console.warn(`component studio: main's stories entries could not be read: ${error instanceof Error ? error.message : error}`);
    return [];
  }
  return normalized
    .map(({ directory, files }) => path.posix.normalize(path.posix.join(toPosix(directory), files)))
    .filter((glob) => !glob.startsWith('../') && !path.posix.isAbsolute(glob));
}

/**
 * Loads the Storybook found by detect.mjs.
 *
 * @param {import('./detect.mjs').FoundStorybook} found
 * @returns {Promise<StorybookProject>}
 */
export async function loadStorybook(found) {
  const { configDir, mainFile, resolve, version } = found;
  const previewApi = PREVIEW_APIS.find((specifier) => resolve(specifier));
  if (!previewApi) throw new Error(`component studio: Storybook ${version} is installed but none of ${PREVIEW_APIS.join(', ')} resolves`);
  const test = TEST_MODULES.find((specifier) => resolve(specifier)) ?? null;
  const project = { version, portable: RENDERER, previewApi, test, annotations: [], stories: [], staticDirs: [], previewHead: '', previewBody: '', viteFinal: async (config) => config, framework: null, webpackAliases: [], features: null };
  const major = Number.parseInt(version, 10);
  if (major === 7) project.features = STORYBOOK7_FEATURES;
  if (!mainFile) return project;

  const loaderFile = PRESET_LOADERS.map(resolve).find(Boolean);
  if (!loaderFile) throw new Error(`component studio: Storybook ${version} is installed but none of ${PRESET_LOADERS.join(', ')} resolves`);
  const { loadAllPresets, loadMainConfig, normalizeStories } = await importResolved(loaderFile);
  const packageJson = readJson(path.join(found.repoRoot, 'package.json')) ?? {};
  // The options every preset function receives, as under `storybook dev`.
  const options = { configDir, configType: 'DEVELOPMENT', packageJson };
  const main = await loadMainConfig({ configDir });
  const framework = frameworkName(main.framework);
  project.framework = framework;
  const frameworkPreset = framework ? resolve(`${framework}/preset`) : null;
  const presets = await loadAllPresets({
    ...options,
    corePresets: frameworkPreset ? [frameworkPreset] : [],
    overridePresets: [],
    // a broken addon is reported and skipped, as Storybook does, instead of stopping the studio
    isCritical: false,
  });

  if (framework && PORTABLE_FRAMEWORKS.test(framework) && resolve(`${framework}/package.json`)) project.portable = framework;
  // The renderer's annotations (and the framework's, when it is the portable
  // module) come with its setProjectAnnotations: not twice.
  const bundled = [RENDERER, project.portable].map((name) => resolve(`${name}/package.json`)).filter(Boolean).map((file) => path.dirname(file) + path.sep);
  const resolveFromConfig = (specifier) => (specifier.startsWith('.') ? path.resolve(configDir, specifier) : resolve(specifier));
  const entries = await presets.apply('previewAnnotations', [], options);
  for (const entry of entries ?? []) {
    const file = annotationFile(entry, resolveFromConfig);
    if (!file || bundled.some((dir) => file.startsWith(dir))) continue;
    project.annotations.push(bareSpecifier(file) ?? file);
  }
  project.stories = storyGlobs(await presets.apply('stories', [], options), normalizeStories, found);
  project.staticDirs = staticDirMappings(await presets.apply('staticDirs', [], options), found);
  // Storybook's own preset starts them from preview-head.html / preview-body.html
  project.previewHead = (await presets.apply('previewHead', readText(path.join(configDir, 'preview-head.html')), options)) ?? '';
  project.previewBody = (await presets.apply('previewBody', readText(path.join(configDir, 'preview-body.html')), options)) ?? '';
  project.viteFinal = (config) => presets.apply('viteFinal', config, options);
  if (major === 7) project.features = (await presets.apply('features', STORYBOOK7_FEATURES, options)) ?? STORYBOOK7_FEATURES;
  project.webpackAliases = await webpackFinalAliases(main, { configDir, repoRoot: found.repoRoot, presets });
  return project;
}
