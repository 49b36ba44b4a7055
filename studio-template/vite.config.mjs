// Vite config of the Component Studio renderer. The backend copies this
// template to <worktree>/.studio/ and starts it with `node .studio/serve.mjs`
// (or through a standby, standby.mjs) with cwd = the worktree. Everything
// sandbox-specific comes from studio.config.json beside this file. The
// repository's build is layered under it (plugin/repo-build/: its vite
// config's plugins and aliases, jsconfig/tsconfig module paths, the Vite
// equivalents of a webpack build), and a repository with Storybook gets what
// its Storybook applies on top: the viteFinal of .storybook/main and its
// presets (plugin/storybook/), loaded only for such a repository.
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { escapePath } from 'tinyglobby';
import { defineConfig } from 'vite';
import { depsSeedPlugin } from './plugin/deps-seed.mjs';
import { composeConfig } from './plugin/compose-config.mjs';
import { createCatalog } from './plugin/discover.mjs';
import { studioPlugin } from './plugin/plugin.mjs';
import { runtimeMapsPlugin } from './plugin/runtime-maps.mjs';
import { shellPlugin } from './plugin/shell.mjs';
import { findStorybook } from './plugin/storybook/detect.mjs';
import { proxyGuardPlugin } from './plugin/proxy-guard.mjs';
import { prepareRepoBuild } from './plugin/repo-build/index.mjs';
import { loadStudioConfig } from './plugin/studio-config.mjs';

const studioDir = path.dirname(fileURLToPath(import.meta.url));
const config = loadStudioConfig(studioDir);

// The repository's Storybook, when it has one: its presets are loaded with its
// own Storybook, for its stories to be composed the way Storybook composes them
// (and found where its main says they are).
const foundStorybook = findStorybook(config);
const storybook = foundStorybook ? await import('./plugin/storybook/index.mjs').then((m) => m.prepareStorybook(foundStorybook)) : null;

const catalog = createCatalog(config, storybook?.project.stories);
const isInside = (dir, file) => file === dir || file.startsWith(dir + path.sep);
const studioInsideRepo = isInside(config.repoRoot, studioDir);
// The backend links node_modules to its install cache: files Vite serves from
// there (outside the repository and .studio/) are the studio's own.
const studioModules = realpathSync(path.join(studioDir, 'node_modules'));
// The whole worktree, not only the package: a workspace package imports its siblings' sources.
const allowed = [config.workspaceRoot, ...(studioInsideRepo ? [] : [studioDir]), studioModules];

// The app's own entry plus every module it may import lazily: Vite scans them
// at startup, so dependencies are optimised once instead of being discovered
// on first render (which answers 504 and reloads the page). Vite globs them:
// escaped, so that a worktree path with glob characters stays literal.
const entries = [path.join(studioDir, 'index.html'), ...catalog.sourceFiles()].map(escapePath);

const studioConfig = defineConfig({
  root: studioDir,
  // behind the API's renderer proxy, every URL the page and HMR use is under the sandbox's path
  base: config.base,
  cacheDir: config.cacheDir,
  clearScreen: false,
  plugins: [
    // first: nothing but the API's proxy gets an answer (proxy-guard.mjs)
    proxyGuardPlugin(config.proxySecret),
    // the prebuilt shell (plugin/shell.mjs) is plain JS with no components of its own to refresh;
    // the pre-bundled deps live in cacheDir, not under node_modules where the plugin skips them
    react({ exclude: [/\/node_modules\//, /\/\.vite-cache\//, /\.prebuilt\.js$/] }),
    shellPlugin(studioDir),
    studioPlugin(config, catalog, storybook),
    depsSeedPlugin(config),
    runtimeMapsPlugin(config.cacheDir),
  ],
  resolve: {
    // one React for the studio and the repository, even when the repository installed its own
    dedupe: ['react', 'react-dom'],
    // `@/components/...` style imports, from the repository's tsconfig.json
    tsconfigPaths: true,
  },
  // the repository's postcss.config.* (Tailwind) applies to its CSS
  css: { postcss: config.repoRoot },
  optimizeDeps: {
    entries,
    include: ['react', 'react-dom', 'react-dom/client', 'react/jsx-runtime', 'react/jsx-dev-runtime', ...(storybook?.deps ?? [])],
  },
  server: {
    host: config.host,
    port: config.port,
    strictPort: true,
    // Vite 8's own deny list (a deny set here replaces it), and studio.config.json: it holds
    // the proxy's secret, never served, even through the proxy
    fs: {
      strict: true,
      allow: allowed,
      deny: ['.env', '.env.*', '*.{crt,pem,key,p12,pfx,cer,der}', '.npmrc', '.yarnrc.yml', '**/.git/**', 'studio.config.json'],
    },
    watch: {
      // in a sandbox the template never changes: watching .studio/ would only cost inotify watches
      // (a function, not a glob: the worktree path may hold glob characters)
      ignored: ['**/node_modules/**', '**/.git/**', ...(studioInsideRepo ? [(file) => isInside(studioDir, file)] : [])],
    },
  },
});

const repoBuild = await prepareRepoBuild(config, storybook?.project);
const composed = await composeConfig(studioConfig, repoBuild, storybook?.project);

export default storybook ? { ...composed, plugins: [...composed.plugins, ...storybook.plugins(studioDir)] } : composed;
