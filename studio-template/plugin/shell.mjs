// The studio app's own modules (src/*) prebuilt into one file, the "shell".
//
// Served from source, the first page load of every sandbox has Vite transform
// the app's dozen modules (TypeScript, JSX, React Refresh, source maps) and the
// browser walk their imports four levels deep before the component can render
// (docs/performance.md, prebuilt shell). The app never changes inside a sandbox, so the backend
// builds it once per template (`node plugin/shell.mjs <out file>`, cached by
// the backend) and puts it at src/main.prebuilt.js; when that file is there,
// index.html loads it instead of src/main.tsx. React, react-dom, the virtual
// config module and the CSS stay imports, which Vite resolves as before: one
// React for the app and the repository's components, the same pre-bundled deps.
// `import.meta.hot` is kept as written, and Vite gives the file its hot context.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The prebuilt shell, relative to the studio directory. */
export const SHELL_FILE = 'src/main.prebuilt.js';
const SOURCE_ENTRY = 'src/main.tsx';
// Kept as imports: resolved by Vite (deps optimiser, virtual modules, CSS handling).
const EXTERNAL = [/^react(\/|$)/, /^react-dom(\/|$)/, /^virtual:/, /\.css$/];

/** Builds the shell of the app in `studioDir` into `outFile` and `outFile`.map (a .js file beside src/main.tsx's directory level). */
export async function buildShell(studioDir, outFile) {
  const { build } = await import('rolldown');
  await build({
    cwd: studioDir,
    input: path.join(studioDir, SOURCE_ENTRY),
    platform: 'browser',
    external: EXTERNAL,
    // the classic automatic runtime: Vite's dev transform uses jsx-dev-runtime, both are pre-bundled
    transform: { jsx: { runtime: 'automatic', development: false } },
    logLevel: 'warn',
    // With its source map (<out file>.map): a JS module served without one gets
    // an identity map made by Vite on every first page load (CPU of its own,
    // docs/performance.md), and the browser's devtools show the app's own sources.
    output: {
      file: outFile,
      format: 'esm',
      sourcemap: true,
      // sources named from where the shell is served in every studio app (src/), not from outFile
      sourcemapPathTransform: (source, mapFile) =>
        path.relative(path.join(studioDir, 'src'), path.resolve(path.dirname(mapFile), source)),
      minify: false,
    },
  });
}

/**
 * The Vite plugin that serves the shell in place of src/main.tsx when it was
 * built into `studioDir` (src/main.tsx otherwise: the template run on its own).
 */
export function shellPlugin(studioDir) {
  const shell = existsSync(path.join(studioDir, SHELL_FILE));
  return {
    name: 'component-studio:shell',
    apply: 'serve',
    transformIndexHtml: {
      order: 'pre',
      handler: (html) => (shell ? html.replace(`"/${SOURCE_ENTRY}"`, `"/${SHELL_FILE}"`) : html),
    },
  };
}

// `node plugin/shell.mjs <out file>`: build the shell of the studio app this file belongs to.
if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node plugin/shell.mjs <out file>');
    process.exit(2);
  }
  await buildShell(path.dirname(path.dirname(fileURLToPath(import.meta.url))), path.resolve(out));
}
