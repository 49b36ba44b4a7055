// Vite's client (/@vite/client, 42 KB) and React Refresh's runtime
// (/@react-refresh, 22 KB) come with no source map, so Vite makes an identity
// map of each, character by character, every time it sends one: on the
// readiness probe and again on each first page load (~70 ms of Vite's CPU per
// page load here, measured with --cpu-prof). A map with no mappings tells Vite
// there is nothing to map: these are Vite's and React's own files, served
// unchanged, which no one debugs through the studio.
const RUNTIME_IDS = [/\/vite\/dist\/client\/client\.mjs$/, /^\/@react-refresh$/];

export function runtimeMapsPlugin() {
  return {
    name: 'component-studio:runtime-maps',
    apply: 'serve',
    enforce: 'post',
    transform: {
      filter: { id: RUNTIME_IDS },
      handler: (code) => ({ code, map: { mappings: '' } }),
    },
  };
}
