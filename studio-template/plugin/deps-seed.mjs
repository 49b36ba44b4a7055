// Shares Vite's pre-bundled dependencies (React & co., optimised with
// rolldown) between the sandboxes of one node instead of optimising them again
// in every sandbox: that costs each Vite CPU before the first page can load,
// and memory that rolldown keeps afterwards (docs/performance.md, deps seed).
//
// The backend names a seed directory per install-cache entry (studio.config.json
// "depsSeedDir"; its name covers the lockfiles and the template, so a seed only
// ever holds bundles of the very node_modules this sandbox links). The first
// sandbox publishes its optimised deps there; later ones start with a copy.
//
// Vite keeps a deps cache only when its _metadata.json carries the hash of the
// current config, and that hash includes the (per-sandbox) root. So the copy's
// metadata is stamped with this server's own hash, read from its deps
// optimizer, which Vite creates with the environment but initialises (reading
// the cache) only when the server listens, after configureServer hooks ran.
// What the seed holds is otherwise left to Vite: a dependency the seed lacks is
// discovered on first import and optimised then, as after any Vite restart
// (the copy's per-entry file hashes are restamped too, so that this adds the
// new bundle without a full page reload). The seed is published without
// source maps (see dropSourceMaps).
import { createHash } from 'node:crypto';
import { cpSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';

export const METADATA_FILE = '_metadata.json';
// Beside the seed's files, not copied: what the seed was built under.
export const SEED_INFO_FILE = 'studio-seed.json';
// How long the first sandbox looks for its optimised deps to publish.
const PUBLISH_POLL_MS = 250;
const PUBLISH_GIVE_UP_MS = 120_000;

/** What, besides the seed directory's name, must match for a seed to be used. */
export function seedInfo(config, viteConfig, depsDir) {
  return {
    // the `define` part of Vite's config hash (development or production React)
    define: viteConfig.keepProcessEnv ? null : process.env.NODE_ENV || viteConfig.mode,
    // metadata paths are relative to the deps dir: the same only at the same place in the worktree
    layout: path.relative(config.repoRoot, depsDir).split(path.sep).join('/'),
  };
}

const readJson = (file) => {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
};

const sameInfo = (a, b) => a !== null && b !== null && a.define === b.define && a.layout === b.layout;

// Vite's fileHash of an optimised entry: getHash(metadata.hash + absolute file + JSON of the
// chunk's imports). A copy must carry hashes made with its own hash and path, or the first
// dependency it discovers later would count every seeded entry as changed (a full reload).
const fileHash = (hash, file, imports) => createHash('sha256').update(hash + file + JSON.stringify(imports)).digest('hex').slice(0, 8);
const IMPORT_LINE = /^import\s+(?:[^'";]*?\sfrom\s*)?["']\.\/([^"']+)["'];?$/;
const SOURCE_MAP_LINE = /\n\/\/# sourceMappingURL=[^\n]*\n?$/;

/** The chunks a rolldown output file imports, read from its leading import statements. */
export function leadingImports(code) {
  const imports = [];
  for (const line of code.split('\n')) {
    const match = IMPORT_LINE.exec(line.trim());
    if (!match) break;
    imports.push(match[1]);
  }
  return imports;
}

/**
 * The imports of every optimised entry of `metadata` in `dir` (written by Vite
 * for `hash` at `depsDir`), or null unless they reproduce each entry's fileHash
 * (then a copy keeps the old hashes: correct, only a reload more on a new dependency).
 */
export function entryImports(metadata, dir, depsDir) {
  const imports = {};
  for (const [id, entry] of Object.entries(metadata.optimized ?? {})) {
    const found = leadingImports(readFileSync(path.join(dir, entry.file), 'utf8'));
    if (fileHash(metadata.hash, path.join(depsDir, entry.file).split(path.sep).join('/'), found) !== entry.fileHash) return null;
    imports[id] = found;
  }
  return imports;
}

/**
 * Drops the source maps of the bundles in `dir`: serving react-dom with its
 * map costs each Vite CPU (decoding and re-encoding it) and memory for as
 * long as it runs, for stack frames inside React only (docs/performance.md).
 */
export function dropSourceMaps(dir) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (name.endsWith('.map')) rmSync(file);
    else if (name.endsWith('.js')) {
      const code = readFileSync(file, 'utf8');
      if (SOURCE_MAP_LINE.test(code)) writeFileSync(file, code.replace(SOURCE_MAP_LINE, '\n'));
    }
  }
}

/** The files a metadata document names (entries and shared chunks), plus their source maps. */
function metadataFiles(metadata) {
  const files = [...Object.values(metadata.optimized ?? {}), ...Object.values(metadata.chunks ?? {})].map((entry) => entry.file);
  return files.every((file) => typeof file === 'string' && !file.includes('/') && !file.startsWith('.')) ? files : null;
}

function linkOrCopy(from, to) {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/**
 * Copies the seed into `depsDir` with this server's hashes; false when there
 * is no usable seed. Built in a temporary directory and renamed into place, so
 * Vite never sees half a cache.
 */
export function installSeed(seedDir, depsDir, hashes, info) {
  const seedMeta = readJson(path.join(seedDir, METADATA_FILE));
  const recorded = readJson(path.join(seedDir, SEED_INFO_FILE));
  if (seedMeta === null || !sameInfo(recorded, info)) return false;
  // the same lockfile hash is what Vite checks first; a different one means another template
  if (seedMeta.lockfileHash !== hashes.lockfileHash) return false;
  const temp = `${depsDir}_seed_${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp, { recursive: true });
  try {
    for (const name of readdirSync(seedDir)) {
      if (name !== METADATA_FILE && name !== SEED_INFO_FILE) linkOrCopy(path.join(seedDir, name), path.join(temp, name));
    }
    const metadata = { ...seedMeta, hash: hashes.hash, configHash: hashes.configHash, lockfileHash: hashes.lockfileHash };
    const imports = recorded.imports ?? {};
    metadata.optimized = Object.fromEntries(
      Object.entries(seedMeta.optimized).map(([id, entry]) => {
        if (!Array.isArray(imports[id])) return [id, entry];
        const file = path.join(depsDir, entry.file).split(path.sep).join('/');
        return [id, { ...entry, fileHash: fileHash(hashes.hash, file, imports[id]) }];
      }),
    );
    writeFileSync(path.join(temp, METADATA_FILE), JSON.stringify(metadata, null, 2));
    renameSync(temp, depsDir);
    return true;
  } catch (error) {
    rmSync(temp, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Publishes `depsDir` as the seed when Vite wrote it for this config and every
 * file it names is there. False: not ready yet, look again later; true: done
 * (published, published by another sandbox first, or impossible here).
 */
export function publishSeed(depsDir, seedDir, hashes, info) {
  if (existsSync(seedDir)) return true;
  const metadata = readJson(path.join(depsDir, METADATA_FILE));
  if (metadata === null || metadata.configHash !== hashes.configHash) return false;
  const files = metadataFiles(metadata);
  if (files === null || files.some((file) => !existsSync(path.join(depsDir, file)))) return false;
  const temp = `${seedDir}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  try {
    // a copy, not links: Vite rewrites this sandbox's deps dir when it discovers a new dependency
    cpSync(depsDir, temp, { recursive: true });
    // Vite may have replaced the deps dir while it was copied: publish only a consistent copy
    const copied = readJson(path.join(temp, METADATA_FILE));
    if (copied === null || copied.browserHash !== metadata.browserHash || files.some((file) => !existsSync(path.join(temp, file)))) {
      rmSync(temp, { recursive: true, force: true });
      return false;
    }
    const imports = entryImports(copied, temp, depsDir);
    dropSourceMaps(temp);
    writeFileSync(path.join(temp, SEED_INFO_FILE), JSON.stringify({ ...info, imports }));
    mkdirSync(path.dirname(seedDir), { recursive: true });
    renameSync(temp, seedDir);
  } catch {
    // most likely another sandbox renamed its copy into place first; else an
    // unwritable cache, where trying again would only copy the bundles again
    rmSync(temp, { recursive: true, force: true });
  }
  return true;
}

/** The Vite plugin that installs or publishes the deps seed of `config` (no-op without depsSeedDir). */
export function depsSeedPlugin(config) {
  return {
    name: 'component-studio:deps-seed',
    apply: 'serve',

    configureServer(server) {
      const seedDir = config.depsSeedDir;
      const optimizer = server.environments?.client?.depsOptimizer;
      if (!seedDir || !optimizer || optimizer.initState !== 'idle') return;
      const { logger } = server.config;
      const depsDir = path.join(server.config.cacheDir, 'deps');
      const hashes = optimizer.metadata;
      const info = seedInfo(config, server.config, depsDir);
      // a cache of this sandbox's own (a Vite restart) is Vite's to validate
      if (existsSync(path.join(depsDir, METADATA_FILE))) return;
      try {
        if (installSeed(seedDir, depsDir, hashes, info)) return;
      } catch (error) {
        logger.warn(`component studio: could not use the shared deps cache ${seedDir}: ${error instanceof Error ? error.message : error}`);
        return;
      }
      if (existsSync(seedDir)) return; // a seed of another Vite mode or layout: leave it
      const started = Date.now();
      let timer = null;
      const poll = () => {
        timer = null;
        let done = false;
        try {
          done = publishSeed(depsDir, seedDir, hashes, info);
        } catch (error) {
          logger.warn(`component studio: could not share the deps cache: ${error instanceof Error ? error.message : error}`);
          done = true;
        }
        if (!done && Date.now() - started < PUBLISH_GIVE_UP_MS) schedule();
      };
      const schedule = () => {
        timer = setTimeout(poll, PUBLISH_POLL_MS);
        timer.unref();
      };
      schedule();
      server.httpServer?.once('close', () => timer && clearTimeout(timer));
    },
  };
}
