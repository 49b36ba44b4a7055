// Whether the repository has a Storybook the studio can compose its stories
// with. Reads two package.json files and nothing else: a repository without
// Storybook pays for this check only, and none of Storybook's modules load.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// The renderer whose portable stories (setProjectAnnotations, composeStory)
// render into the studio's React.
export const RENDERER = '@storybook/react';
// Storybook's own package or a React renderer/framework, as a repository lists them.
const DECLARES_STORYBOOK = /^(storybook|@storybook\/(react[a-z0-9-]*|nextjs[a-z0-9-]*))$/;
const MAIN_NAMES = ['main.ts', 'main.mts', 'main.cts', 'main.js', 'main.mjs', 'main.cjs'];
const MIN_MAJOR = 7;

/**
 * @typedef {object} FoundStorybook
 * @property {string} repoRoot
 * @property {string} configDir absolute path of the Storybook config directory (.storybook)
 * @property {string | null} mainFile absolute path of its main.*, or null
 * @property {string} version installed version of the React renderer
 * @property {(specifier: string) => string | null} resolve Node's resolution from the repository
 */

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** A resolver of module specifiers as the repository's own code resolves them (null when not installed). */
export function resolverFrom(dir) {
  const require = createRequire(path.join(dir, 'package.json'));
  return (specifier) => {
    try {
      return require.resolve(specifier);
    } catch {
      return null;
    }
  };
}

/**
 * The repository's Storybook, or null: it must list Storybook in its
 * package.json and have `@storybook/react` 7 or later installed.
 *
 * @param {{ repoRoot: string, storybookDir: string }} config
 * @returns {FoundStorybook | null}
 */
export function findStorybook({ repoRoot, storybookDir }) {
  const manifest = readJson(path.join(repoRoot, 'package.json'));
  if (!manifest) return null;
  const declared = Object.keys({ ...manifest.dependencies, ...manifest.devDependencies }).some((name) => DECLARES_STORYBOOK.test(name));
  if (!declared) return null;
  const resolve = resolverFrom(repoRoot);
  const rendererManifest = resolve(`${RENDERER}/package.json`);
  const version = rendererManifest ? readJson(rendererManifest)?.version : null;
  if (typeof version !== 'string' || !(Number.parseInt(version, 10) >= MIN_MAJOR)) return null;
  const configDir = path.join(repoRoot, storybookDir);
  const main = MAIN_NAMES.map((name) => path.join(configDir, name)).find((file) => existsSync(file)) ?? null;
  return { repoRoot, configDir, mainFile: main, version, resolve };
}
