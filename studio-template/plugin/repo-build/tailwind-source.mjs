// Tailwind CSS 4 finds the classes to generate by scanning a base directory:
// @tailwindcss/vite takes Vite's root, which in a sandbox is `.studio/`, not
// the repository (Storybook's Vite root is the repository; @tailwindcss/postcss
// takes the working directory, the worktree). An `@import "tailwindcss"` that
// does not name its source gets the repository's root as source, so that what
// the repository's files use is generated, whichever plugin compiles it. An
// import with its own `source(...)` (or `source(none)`) is left as written.
import path from 'node:path';

// `@import "tailwindcss"` or `@import 'tailwindcss/utilities.css'`, then everything up to `;`
const TAILWIND_IMPORT = /@import\s+(["'])tailwindcss(?:\/utilities(?:\.css)?)?\1([^;]*);/g;
const CSS_FILE = /\.(css|pcss|postcss)$/;

/** `css` with a source() pointing at `repoRoot` on each Tailwind import that has none. */
export function withTailwindSource(css, file, repoRoot) {
  if (!css.includes('tailwindcss')) return css;
  let relative = path.relative(path.dirname(file), repoRoot).split(path.sep).join('/');
  if (!relative) relative = '.';
  return css.replace(TAILWIND_IMPORT, (statement, _quote, rest) => (/\bsource\(/.test(rest) ? statement : `${statement.slice(0, -1).trimEnd()} source(${JSON.stringify(relative)});`));
}

export function tailwindSourcePlugin(repoRoot) {
  const prefix = repoRoot + path.sep;
  return {
    name: 'component-studio:tailwind-source',
    enforce: 'pre',
    transform(code, id) {
      const file = id.split('?')[0];
      if (!CSS_FILE.test(file) || !file.startsWith(prefix) || file.includes(`${path.sep}node_modules${path.sep}`)) return null;
      const rewritten = withTailwindSource(code, file, repoRoot);
      return rewritten === code ? null : { code: rewritten, map: null };
    },
  };
}
