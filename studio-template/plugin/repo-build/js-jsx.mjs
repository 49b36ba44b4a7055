// JSX in .js files, as Create React App and webpack's Babel setups allow and
// Vite does not (it parses .js as plain JavaScript). The repository's own .js
// files (never node_modules) are parsed as JSX and their JSX compiled to
// React's automatic runtime; Vite's own transform then sees the
// jsx-dev-runtime import and adds React Refresh as it does for .jsx files.
import path from 'node:path';
import { transformWithOxc } from 'vite';

const JS_FILE = /\.js$/;
// A cheap test before parsing: a file with no `<` has no JSX.
const MAY_HAVE_JSX = /</;

export function jsxInJsPlugin(repoRoot) {
  const prefix = repoRoot + path.sep;
  const isRepoSource = (file) => file.startsWith(prefix) && !file.includes(`${path.sep}node_modules${path.sep}`);
  return {
    name: 'component-studio:jsx-in-js',
    enforce: 'pre',
    config: () => ({
      // the dependency scan reads the same files at startup
      optimizeDeps: { rolldownOptions: { moduleTypes: { '.js': 'jsx' } } },
    }),
    async transform(code, id) {
      const file = id.split('?')[0];
      if (!JS_FILE.test(file) || !isRepoSource(file) || !MAY_HAVE_JSX.test(code)) return null;
      const result = await transformWithOxc(code, file, { lang: 'jsx', jsx: { runtime: 'automatic', development: true, refresh: false } });
      return { code: result.code, map: result.map };
    },
  };
}
