// Source maps no one reads through the studio, left out of what Vite sends.
//
// Vite's client (/@vite/client, 42 KB) and React Refresh's runtime
// (/@react-refresh, 22 KB) come with no source map, so Vite makes an identity
// map of each, character by character, every time it sends one: on the
// readiness probe and again on each first page load (~70 ms of Vite's CPU per
// page load here, measured with --cpu-prof).
//
// The pre-bundled dependencies (cacheDir/deps) do have maps, and Vite inlines
// each into the module as base64 on every request: on a real repository that
// made a first page load 18 MB instead of 5 (Storybook's preview API, an icon
// set: a 0.9 MB module sent as 4.4 MB), and the page waited on the transfer
// (docs/performance.md, dependency source maps). Devtools then show a
// dependency as the readable bundle Vite made of it, not its original files.
//
// A map with no mappings tells Vite there is nothing to map.
const RUNTIME_IDS = [/\/vite\/dist\/client\/client\.mjs$/, /^\/@react-refresh$/];

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `cacheDir`: Vite's cache directory, whose deps/ (and deps_temp_*) hold the pre-bundles. */
export function runtimeMapsPlugin(cacheDir = null) {
  const ids = cacheDir ? [...RUNTIME_IDS, new RegExp(`^${escapeRegExp(cacheDir.replace(/\/+$/, ''))}/deps`)] : RUNTIME_IDS;
  return {
    name: 'component-studio:runtime-maps',
    apply: 'serve',
    enforce: 'post',
    transform: {
      filter: { id: ids },
      handler: (code) => ({ code, map: { mappings: '' } }),
    },
  };
}
