// Vite 8 changed what `import x from '<a CommonJS module>'` gives: the module's
// `module.exports` when the importer's package is `"type": "module"`, even if
// the module says `__esModule` and has a `default` (Babel's and tsc's output).
// Vite 5-7's esbuild optimizer, and webpack, give `exports.default` then. A
// repository written against those imports such packages the old way
// (`import FeatherIcon from 'feather-icons-react'`), and its own Storybook
// renders them; under Vite 8's rule the component is an object and React
// throws "Element type is invalid". So the studio's Vite, which is 8, keeps
// the old rule (`legacy.inconsistentCjsInterop`) unless the repository itself
// is built with Vite 8 or later.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** The major version of the Vite the repository at `repoRoot` resolves, or null (none). */
export function repositoryViteMajor(repoRoot) {
  try {
    const require = createRequire(join(repoRoot, 'package.json'));
    const manifest = JSON.parse(readFileSync(require.resolve('vite/package.json'), 'utf8'));
    const major = Number.parseInt(String(manifest.version).split('.')[0], 10);
    return Number.isNaN(major) ? null : major;
  } catch {
    return null;
  }
}

/** The `legacy` setting for the repository's CommonJS default imports (see above). */
export function cjsInteropLegacy(repoRoot) {
  const major = repositoryViteMajor(repoRoot);
  return { inconsistentCjsInterop: major === null || major < 8 };
}
