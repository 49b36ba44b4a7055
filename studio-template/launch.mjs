// Starts Vite's dev server on the studio config at `configUrl`, as Vite's CLI
// would: shared by serve.mjs (a cold start) and standby.mjs (a process that
// imported Vite ahead of need). No bare imports here: the standby loads this
// file from the template directory, where no node_modules need to be.
import { performance } from 'node:perf_hooks';

export async function launch({ createServer, version }, configUrl) {
  try {
    const { default: config } = await import(configUrl);
    // createServer stops the server and exits on SIGTERM, as under the CLI
    const server = await createServer({ ...config, configFile: false });
    await server.listen();
    // the CLI's banner; "ready in" counts from the process's start
    server.config.logger.info(`\n  VITE v${version}  ready in ${Math.ceil(performance.now())} ms\n`);
    server.printUrls();
  } catch (error) {
    // the CLI's wording: the backend reads "Port N is already in use" from it
    console.error(`error when starting dev server:\n${error instanceof Error ? error.stack : error}`);
    process.exit(1);
  }
}
