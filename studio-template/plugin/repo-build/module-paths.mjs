// Module paths of the repository's jsconfig.json / tsconfig.json that Vite's
// own tsconfig support (resolve.tsconfigPaths: tsconfig.json `paths`) does not
// cover: `compilerOptions.baseUrl` imports (Create React App's absolute
// imports, `import Button from 'components/Button'` with baseUrl `src`) and a
// jsconfig.json's `paths`. A bare import resolves as before when it can
// (node_modules first, as in webpack's resolve.modules); only one that does
// not resolve, whose first segment exists under baseUrl, is taken from there.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const BARE = /^(?![./\0]|[a-z]+:|\/)/i;
const EXTENSIONS = ['.js', '.jsx', '.ts', '.tsx', '.mjs', '.json'];

/** JSON with comments and trailing commas (tsconfig's dialect) -> value, or null. */
export function parseJsonc(text) {
  let out = '';
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (char === '"') {
      let end = i + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      out += text.slice(i, end + 1);
      i = end;
    } else if (char === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i += 1;
      out += '\n';
    } else if (char === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
    } else {
      out += char;
    }
  }
  try {
    return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
  } catch {
    return null;
  }
}

/** compilerOptions of `file` with its relative `extends` chain applied, baseUrl made absolute. */
function compilerOptions(file, seen = new Set()) {
  if (seen.has(file) || !existsSync(file)) return {};
  seen.add(file);
  const json = parseJsonc(readFileSync(file, 'utf8')) ?? {};
  const parents = (Array.isArray(json.extends) ? json.extends : [json.extends]).filter((entry) => typeof entry === 'string' && entry.startsWith('.'));
  let options = {};
  for (const parent of parents) {
    const parentFile = path.resolve(path.dirname(file), parent.endsWith('.json') ? parent : `${parent}.json`);
    options = { ...options, ...compilerOptions(parentFile, seen) };
  }
  const own = json.compilerOptions ?? {};
  const result = { ...options, ...own };
  if (typeof own.baseUrl === 'string') result.baseUrl = path.resolve(path.dirname(file), own.baseUrl);
  if (own.paths) result.pathsBase = result.baseUrl ?? path.dirname(file);
  return result;
}

/**
 * `{ baseUrl, paths, pathsBase, source }` from the repository's tsconfig.json
 * or, without one, its jsconfig.json; `paths` only from a jsconfig.json (Vite
 * reads a tsconfig's itself). Null when neither sets baseUrl or paths.
 */
export function readModulePaths(repoRoot) {
  for (const name of ['tsconfig.json', 'jsconfig.json']) {
    const file = path.join(repoRoot, name);
    if (!existsSync(file)) continue;
    const options = compilerOptions(file);
    const paths = name === 'jsconfig.json' && options.paths && typeof options.paths === 'object' ? options.paths : null;
    if (!options.baseUrl && !paths) return null;
    return { baseUrl: options.baseUrl ?? null, paths, pathsBase: options.pathsBase ?? repoRoot, source: file };
  }
  return null;
}

/** The targets a `paths` pattern maps `id` to (absolute, unresolved), or null when no pattern matches. */
export function matchPaths(id, paths, base) {
  for (const [pattern, targets] of Object.entries(paths)) {
    const star = pattern.indexOf('*');
    let captured;
    if (star < 0) {
      if (id !== pattern) continue;
      captured = '';
    } else {
      const [head, tail] = [pattern.slice(0, star), pattern.slice(star + 1)];
      if (!id.startsWith(head) || !id.endsWith(tail) || id.length < head.length + tail.length) continue;
      captured = id.slice(head.length, id.length - tail.length);
    }
    return (Array.isArray(targets) ? targets : []).map((target) => path.resolve(base, target.replace('*', captured)));
  }
  return null;
}

export function modulePathsPlugin(repoRoot, modulePaths) {
  const { baseUrl, paths, pathsBase } = modulePaths;
  const prefix = repoRoot + path.sep;
  // a file or directory named by the import's first segment (no cache: files come and go in a sandbox)
  const hasUnderBaseUrl = (id) => {
    const first = path.join(baseUrl, id.split('/')[0]);
    return [first, ...EXTENSIONS.map((ext) => first + ext)].some((candidate) => existsSync(candidate));
  };
  return {
    name: 'component-studio:module-paths',
    enforce: 'pre',
    async resolveId(id, importer, options) {
      if (!importer || !BARE.test(id) || !importer.startsWith(prefix) || importer.includes(`${path.sep}node_modules${path.sep}`)) return null;
      const mapped = paths ? matchPaths(id, paths, pathsBase) : null;
      if (mapped) {
        for (const target of mapped) {
          const resolved = await this.resolve(target, importer, { ...options, skipSelf: true });
          if (resolved) return resolved;
        }
        return null;
      }
      if (!baseUrl || !hasUnderBaseUrl(id)) return null;
      const normal = await this.resolve(id, importer, { ...options, skipSelf: true });
      if (normal) return normal;
      return this.resolve(path.join(baseUrl, id), importer, { ...options, skipSelf: true });
    },
  };
}
