// Starts the studio's Vite dev server: `node .studio/serve.mjs`, with
// cwd = the worktree (see vite.config.mjs).
//
// Vite's own CLI (`vite --config vite.config.mjs`) goes through a config
// loader: the default one bundles the config with rolldown before importing
// it; `--configLoader native` imports it, but on Node older than 22.15 it first
// registers module hooks that run in a worker thread, which starts a second
// Node environment and then answers every later import of the process. The
// config is plain ESM, so it is imported here as any module and handed to
// createServer (launch.mjs): ~0.17 s less CPU to ready than `--configLoader
// native` on Node 20 (median 0.67 s vs 0.84 s). Vite's CLI on vite.config.mjs
// still works (the template's tests and `npm run dev` use it).
import module from 'node:module';

// As Vite's CLI does: on Node 22.1+ the compiled code of Vite's modules is
// kept between starts (most of the CPU to ready is loading them). Vite runs
// until it is killed, so the cache is written once it is warm, not at exit.
// Node 20 has neither function. Before the imports below, so they use it.
module.enableCompileCache?.();
setTimeout(() => module.flushCompileCache?.(), 10_000).unref();

const vite = await import('vite');
const { launch } = await import('./launch.mjs');
await launch(vite, new URL('./vite.config.mjs', import.meta.url).href);
