// Builds the component catalog served as /__studio/components.json: which
// modules of the repository are components, their exports, and the Storybook
// stories that belong to each. Files are read statically (see analyse.mjs) and
// re-parsed only when their mtime or size changed.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { globSync, isDynamicPattern } from 'tinyglobby';
import { idSegment, isComponentName, readExports, readStories } from './analyse.mjs';

const ALWAYS_IGNORED = ['**/node_modules/**', '**/.git/**', '.studio/**'];
const NOT_COMPONENTS = ['**/*.test.*', '**/*.spec.*', '**/*.stories.*', '**/__tests__/**', '**/*.d.ts'];
const STORY_EXTENSIONS = '{tsx,jsx,ts,js,mjs}';
// In Storybook's order (getInterpretedFile's extensions, .js first): a repository with
// both an empty preview.js and a preview.tsx gets from Storybook what preview.js says.
const PREVIEW_NAMES = ['js', 'jsx', 'ts', 'tsx', 'mjs', 'cjs', 'mts', 'cts'].map((ext) => `preview.${ext}`);
const RESOLVE_SUFFIXES = ['', '.tsx', '.jsx', '.ts', '.js', '/index.tsx', '/index.jsx', '/index.ts', '/index.js'];

const toPosix = (p) => p.split(path.sep).join('/');

/** The directories (repo-relative, no glob characters) a glob can match files under. */
export function globBase(pattern) {
  const parts = [];
  for (const part of pattern.split('/')) {
    if (isDynamicPattern(part)) break;
    parts.push(part);
  }
  // the last static part of a pattern without wildcards is a file name
  if (parts.length === pattern.split('/').length) parts.pop();
  return parts.join('/');
}

/** Where stories may live: beside components (the component glob's base) and under src/ and stories/. */
function storyPatterns(componentGlob) {
  const bases = new Set([globBase(componentGlob), 'src', 'stories']);
  return [...bases].map((base) => (base ? `${base}/**/*.stories.${STORY_EXTENSIONS}` : `**/*.stories.${STORY_EXTENSIONS}`));
}

function pascalCase(text) {
  return text
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((word) => word[0].toUpperCase() + word.slice(1))
    .join('');
}

function squash(text) {
  return text.toLowerCase().replace(/[^a-z0-9]/g, '');
}

function stemOf(file) {
  const base = path.basename(file).replace(/\.[^.]+$/, '');
  return base === 'index' ? path.basename(path.dirname(file)) : base;
}

/**
 * Picks the export a module is named after and rendered through: the export
 * matching the file name (`alert-dialog.tsx` -> `AlertDialog`), else a default
 * export, else its first PascalCase export.
 */
export function chooseName(file, exports, defaultName) {
  const stem = stemOf(file);
  const byStem = exports.find((name) => name !== 'default' && squash(name) === squash(stem));
  if (byStem) return byStem;
  if (exports.includes('default')) return defaultName && isComponentName(defaultName) ? defaultName : pascalCase(stem);
  return exports.find(isComponentName) ?? pascalCase(stem);
}

/**
 * A catalog of one repository. `build()` returns the components.json document;
 * `sourceFiles()` the absolute paths of everything the app may import (for
 * Vite's dependency scan). `storyGlobs` are more places stories live (the
 * `stories` of the repository's .storybook/main).
 */
export function createCatalog(config, storyGlobs = []) {
  const { repoRoot, componentGlob, wrapper, storybookDir } = config;
  const parsed = new Map(); // absolute path -> { key, value }

  const cached = (file, read) => {
    let stat;
    try {
      stat = statSync(file);
    } catch {
      parsed.delete(file);
      return null;
    }
    const key = `${stat.mtimeMs}:${stat.size}`;
    const hit = parsed.get(file);
    if (hit && hit.key === key && hit.read === read) return hit.value;
    const value = read(file, readFileSync(file, 'utf8'));
    parsed.set(file, { key, read, value });
    return value;
  };

  const glob = (patterns, ignore) =>
    globSync(patterns, { cwd: repoRoot, ignore: [...ALWAYS_IGNORED, ...ignore], expandDirectories: false, followSymbolicLinks: false })
      .map(toPosix)
      .sort();

  const componentFiles = () => glob([componentGlob], NOT_COMPONENTS);
  const storyFiles = () => glob([...storyPatterns(componentGlob), ...storyGlobs], ['**/*.mdx']);
  const previewFile = () => PREVIEW_NAMES.map((name) => `${storybookDir}/${name}`).find((rel) => existsSync(path.join(repoRoot, rel))) ?? null;

  function sourceFiles() {
    const rels = [...componentFiles(), ...storyFiles()];
    const preview = previewFile();
    if (preview) rels.push(preview);
    if (wrapper) rels.push(wrapper);
    return rels.map((rel) => path.join(repoRoot, rel)).filter((file) => existsSync(file));
  }

  /** The repo-relative module that a relative import in `fromRel` points at, if it exists. */
  function resolveRelative(fromRel, source) {
    if (!source || !source.startsWith('.')) return null;
    const target = toPosix(path.posix.normalize(path.posix.join(path.posix.dirname(fromRel), source)));
    for (const suffix of RESOLVE_SUFFIXES) {
      const candidate = target + suffix;
      if (existsSync(path.join(repoRoot, candidate)) && statSync(path.join(repoRoot, candidate)).isFile()) return candidate;
    }
    return null;
  }

  function build() {
    const components = [];
    for (const rel of componentFiles()) {
      const info = cached(path.join(repoRoot, rel), readExports);
      if (!info) continue;
      const candidates = info.exports.filter((name) => name === 'default' || isComponentName(name));
      // a file that does not parse is listed anyway, so that its error shows when selected
      if (candidates.length === 0 && !info.error) continue;
      components.push({
        name: chooseName(rel, info.exports, info.defaultName),
        module: rel,
        exports: info.exports,
        stories: [],
        storiesModule: null,
      });
    }

    const byModule = new Map(components.map((c) => [c.module, c]));
    const attach = (component, rel, stories) => {
      component.storiesModule = rel;
      component.stories = stories;
    };
    const free = (c) => c && c.storiesModule === null;

    for (const rel of storyFiles()) {
      const csf = cached(path.join(repoRoot, rel), readStories);
      if (!csf) continue;
      const { meta, stories } = csf;
      const stem = path.posix.basename(rel).replace(/\.stories\.[^.]+$/, '');
      const dir = path.posix.dirname(rel);
      const importedName = meta.component ? (meta.component.imported && meta.component.imported !== 'default' && meta.component.imported !== '*' ? meta.component.imported : meta.component.local) : null;
      const titleLeaf = meta.title ? meta.title.split('/').pop().trim() : null;
      const candidates = [
        byModule.get(resolveRelative(rel, meta.component?.source)),
        components.find((c) => path.posix.dirname(c.module) === dir && stemOf(c.module) === stem),
        importedName ? components.find((c) => free(c) && c.name === importedName) : undefined,
        importedName ? components.find((c) => free(c) && c.exports.includes(importedName)) : undefined,
        titleLeaf ? components.find((c) => free(c) && squash(c.name) === squash(titleLeaf)) : undefined,
      ];
      const target = candidates.find(free);
      if (target) {
        attach(target, rel, stories);
      } else {
        // stories of a component the glob does not cover still get listed and rendered
        const entry = { name: pascalCase(titleLeaf ?? importedName ?? stem) || stem, module: rel, exports: [], stories: [], storiesModule: null };
        attach(entry, rel, stories);
        components.push(entry);
      }
    }

    components.sort((a, b) => a.name.localeCompare(b.name) || a.module.localeCompare(b.module));
    const seen = new Map();
    for (const c of components) seen.set(c.name, (seen.get(c.name) ?? 0) + 1);
    const byDir = (c) => `${c.name}@${path.posix.dirname(c.module)}`;
    const seenInDir = new Map();
    for (const c of components) seenInDir.set(byDir(c), (seenInDir.get(byDir(c)) ?? 0) + 1);
    const out = components.map((c) => {
      // a name shared by several modules is qualified by its directory, or by its
      // module when two files of one directory give the same name
      const qualified = seenInDir.get(byDir(c)) > 1 ? `${c.name}@${c.module.replace(/\.[^./]+$/, '')}` : byDir(c);
      const id = seen.get(c.name) > 1 ? qualified : c.name;
      return {
        id,
        name: c.name,
        module: c.module,
        exports: c.exports,
        // argTypes only where the stories file declares some (static parts): most have none
        stories: c.stories.map((s) => ({
          id: `${idSegment(id)}--${idSegment(s.exportName)}`,
          name: s.name,
          exportName: s.exportName,
          args: s.args,
          ...(Object.keys(s.argTypes ?? {}).length ? { argTypes: s.argTypes } : {}),
        })),
        storiesModule: c.storiesModule,
      };
    });
    return { components: out, preview: previewFile(), generatedAt: new Date().toISOString() };
  }

  /** True when `file` (absolute) is one the catalog is built from. */
  function isRelevant(file) {
    const rel = toPosix(path.relative(repoRoot, file));
    if (rel.startsWith('..') || path.isAbsolute(rel)) return false;
    if (rel.startsWith(`${storybookDir}/`)) return true;
    return /\.(tsx|jsx|ts|js|mjs)$/.test(rel) && !/(^|\/)(node_modules|\.git|\.studio)\//.test(rel);
  }

  /** Repo-relative directories new components and stories may appear in (for the file watcher). */
  function watchedDirs() {
    return [...new Set([globBase(componentGlob), 'src', 'stories', storybookDir, ...storyGlobs.map(globBase)])];
  }

  return { build, sourceFiles, isRelevant, watchedDirs };
}
