// A Vite launcher started ahead of need:
//   node --import vite --import @vitejs/plugin-react --import tinyglobby standby.mjs
// with cwd = the install cache entry whose node_modules a sandbox's
// .studio/node_modules links to (studio/vite/standby.py).
//
// Importing Vite and the config's plugins is most of a cold start's CPU
// (docs/performance.md, Vite standby). The --import flags do it while
// this process waits (resolved from the cwd, as the config's imports will
// resolve them through the link: the same real files, so the same modules).
// It then reads one line from stdin, {"cwd": <worktree>, "launcher": <its
// .studio/serve.mjs>}, and runs that launcher there, which finds Vite loaded.
// stdin closing before that line (its owner went away) ends the process.
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

const lines = readline.createInterface({ input: process.stdin });
const line = await new Promise((resolve) => {
  lines.once('line', resolve);
  lines.once('close', () => resolve(null));
});
if (line === null) process.exit(0);
lines.close();
process.stdin.destroy();
const { cwd, launcher } = JSON.parse(line);
process.chdir(cwd);
await import(pathToFileURL(launcher).href);
