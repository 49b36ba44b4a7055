// The first page load of a sandbox is a chain of round trips: index.html, the
// app's modules, React renders the app, the app asks for the component
// catalog, then imports the selected component, its stories and the project's
// preview. The script here is put inline into index.html and runs while the
// page is parsed: it asks for the catalog at once and, once it has it, lets
// the browser fetch the modules the deep link (`#/<component>`) will render
// (`<link rel="modulepreload">`), while the app's own modules and React are
// still loading. The app takes the catalog response from it (src/catalog.ts)
// instead of asking again. A link naming nothing it can find preloads the
// preview and wrapper only; the app then resolves it as always. At the same
// time it asks the plugin for the whole graph of modules that page will load
// (preload.mjs) and preloads those too: the modules those modules import
// would otherwise be found one level at a time.

/** The window property holding the catalog response the inline script started. */
export const EARLY_CATALOG_KEY = '__studioCatalogResponse';

/**
 * The catalog entry a link's component part names: the lookups of findComponent
 * in src/catalog.ts, and for no name the component the page lands on. Runs in the browser (the inline script) and in the plugin
 * (preload.mjs), so it stands alone.
 */
export function findEntry(components, name) {
  const fold = (text) => text.toLowerCase().replace(/[^a-z0-9]/g, '');
  // no component in the link: the one the page lands on (landingRoute in src/catalog.ts)
  if (!name) return components.find((c) => c.stories.length > 0) ?? components[0];
  return (
    components.find((c) => c.id === name) ??
    components.find((c) => c.name === name) ??
    components.find((c) => c.module === name) ??
    components.find((c) => fold(c.id) === fold(name) || fold(c.name) === fold(name))
  );
}

// Runs in the browser, as a classic script: no imports, nothing from this module's scope
// but `find` (findEntry, passed in).
function earlyLoad(find, key, catalogUrl, preloadUrl, fsBase, wrapper) {
  let name = window.location.hash.replace(/^#\/?/, '').split('/')[0];
  try {
    name = decodeURIComponent(name);
  } catch {
    // the app shows the link as not found
  }
  const response = fetch(catalogUrl, { cache: 'no-store' });
  window[key] = response;
  const preload = (href) => {
    const link = document.createElement('link');
    link.rel = 'modulepreload';
    link.href = href;
    document.head.appendChild(link);
  };
  // the very URL src/modules.ts imports, so the browser's module map has it
  const preloadFile = (rel) => preload(new URL(encodeURI(fsBase + rel), window.location.origin).href);
  // Every module the page will load statically, as far as Vite knows (preload.mjs), at once.
  fetch(`${preloadUrl}?component=${encodeURIComponent(name)}`, { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : []))
    .then((urls) => urls.forEach((url) => preload(new URL(url, window.location.origin).href)))
    .catch(() => {
      // the imports fetch the modules as they go
    });
  if (wrapper) preloadFile(wrapper);
  response
    .then((r) => (r.ok ? r.clone().json() : null))
    .then((doc) => {
      if (!doc) return;
      if (doc.preview) preloadFile(doc.preview);
      const entry = find(doc.components, name);
      if (!entry) return;
      if (entry.exports.length > 0) preloadFile(entry.module);
      if (entry.storiesModule) preloadFile(entry.storiesModule);
    })
    .catch(() => {
      // the app reports a failed catalog request itself
    });
}

/** The inline script of index.html for the client config `client` (see clientConfig in plugin.mjs). */
export function earlyLoadScript(catalogPath, preloadPath, client) {
  // `<` escaped: the values sit inside a <script> element (a path may hold "</script>")
  const args = [EARLY_CATALOG_KEY, catalogPath, preloadPath, client.fsBase, client.wrapper].map((value) => JSON.stringify(value).replace(/</g, '\\u003c'));
  return `(${earlyLoad.toString()})(${findEntry.toString()}, ${args.join(', ')});`;
}
