// Vite config of the Component Studio renderer. The backend copies this
// template to <worktree>/.studio/ and starts
//   node .studio/node_modules/vite/bin/vite.js --config .studio/vite.config.mjs
// with cwd = the worktree. Everything sandbox-specific comes from
// studio.config.json beside this file; the repository's own vite config is
// deliberately not loaded (it may use plugins the studio does not have).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { studioPlugin } from './plugin/plugin.mjs';
import { loadStudioConfig } from './plugin/studio-config.mjs';

const studioDir = path.dirname(fileURLToPath(import.meta.url));
const config = loadStudioConfig(studioDir);
const studio = studioPlugin(config);
const studioInsideRepo = !path.relative(config.repoRoot, studioDir).startsWith('..');

// The app's own entry plus every module it may import lazily: Vite scans them
// at startup, so dependencies are optimised once instead of being discovered
// on first render (which answers 504 and reloads the page).
const entries = [path.join(studioDir, 'index.html'), ...studio.catalog.sourceFiles()];

export default defineConfig({
  root: studioDir,
  cacheDir: config.cacheDir,
  clearScreen: false,
  plugins: [react(), studio],
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
    include: ['react', 'react-dom', 'react-dom/client', 'react/jsx-runtime', 'react/jsx-dev-runtime'],
  },
  server: {
    host: config.host,
    port: config.port,
    strictPort: true,
    fs: { strict: true, allow: studioInsideRepo ? [config.repoRoot] : [config.repoRoot, studioDir] },
    watch: {
      // in a sandbox the template never changes: watching .studio/ would only cost inotify watches
      ignored: ['**/node_modules/**', '**/.git/**', ...(studioInsideRepo ? [`${studioDir}/**`] : [])],
    },
  },
});
