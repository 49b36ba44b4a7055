// The first page load's whole module graph, asked for in one request.
//
// A page finds its modules one level at a time: the shell, then React, then
// (once the app has rendered) Storybook's composition, then the addons'
// previews it imports, then the chunks those import, then the preview and the
// story's component and theirs. On a real repository that is seven or eight
// round trips, each waiting for the level above to be fetched and parsed
// (docs/performance.md, preloaded module graph). Vite already knows the graph:
// a ready sandbox's warm-up (studio/vite/warm.py) had it transform every
// module the page loads. So the page's inline script (early-load.mjs) asks
// here, as it is parsed, for every module the deep-linked story will need and
// preloads them all at once; the imports then find them in the module map.
//
// Only static imports are followed: a lazily imported module (a chart a
// component loads on click) is not fetched ahead of need. The exception is a
// module named as `eager`, whose lazy imports the first render waits for
// (Storybook 8+'s renderer imports its test module in beforeAll). A module
// Vite has not transformed yet is listed without its imports: the list is a
// head start, never a requirement.

/** Under Vite's base, as the catalog. */
export const PRELOAD_PATH = '/__studio/preload.json';

// Vite's rewritten static imports: `import x from "/..."`, `export * from "/..."`, `import "/..."`.
// `import("/...")` does not match: a quote must follow `import` directly.
const STATIC_IMPORT = /(?:\bfrom\s*|\bimport\s*)["'](\/[^"'\s]+)["']/g;
// Vite's rewritten lazy imports with a literal URL: `import("/...")`.
const LAZY_IMPORT = /\bimport\s*\(\s*["'](\/[^"'\s]+)["']\s*\)/g;
// Per transform result (a new object after every re-transform): its static imports.
const importsOf = new WeakMap();
// A page's module graph is a few hundred modules; a runaway graph stops here.
const LIMIT = 2000;

function staticImports(result) {
  let found = importsOf.get(result);
  if (!found) {
    found = [...new Set(Array.from(result.code.matchAll(STATIC_IMPORT), (m) => m[1]))];
    importsOf.set(result, found);
  }
  return found;
}

function lazyImports(result) {
  return [...new Set(Array.from(result.code.matchAll(LAZY_IMPORT), (m) => m[1]))];
}

// Vite's encoding of a module id in a URL (`/@id/__x00__virtual:x` is `\0virtual:x`).
const ID_PREFIX = '/@id/';
const NULL_BYTE = '__x00__';

/** The module graph's URL of a URL the page requests under `base`. */
function graphUrl(url, base) {
  const served = url.startsWith(base) ? `/${url.slice(base.length)}` : url;
  return served.startsWith(ID_PREFIX) ? served.slice(ID_PREFIX.length).replace(NULL_BYTE, '\0') : served;
}

/**
 * Every module `roots` (URLs under `base`) import statically, transitively, roots first
 * and breadth first (the order the browser would discover them), as URLs under `base`.
 * The modules in `eager` (URLs under `base`) have their lazy imports followed too.
 */
export function moduleClosure(moduleGraph, base, roots, eager = new Set()) {
  const seen = new Set(roots);
  const order = [];
  let level = [...roots];
  while (level.length > 0 && order.length < LIMIT) {
    order.push(...level);
    const found = level.map((url) => [url, moduleGraph.urlToModuleMap.get(graphUrl(url, base))]);
    level = [];
    for (const [from, node] of found) {
      // not served yet (nothing to follow): listed, the browser finds its imports itself
      if (!node?.transformResult?.code) continue;
      const imports = staticImports(node.transformResult);
      for (const url of eager.has(from) ? [...imports, ...lazyImports(node.transformResult)] : imports) {
        if (!seen.has(url)) {
          seen.add(url);
          level.push(url);
        }
      }
    }
  }
  return order.slice(0, LIMIT);
}

/**
 * The middleware answering PRELOAD_PATH`?component=<the link's component>`: the
 * closure of the page's entries, the project setup and that component's modules.
 * `roots(component)` names them (URLs under the base). `?component=*&roots=1`
 * answers the roots of every component, unfollowed: what a warm-up requests.
 * `eager`: as moduleClosure's.
 */
export function preloadMiddleware(server, base, roots, eager = new Set()) {
  return (req, res, next) => {
    if (req.method !== 'GET') return next();
    const query = new URL(req.url ?? '', 'http://x').searchParams;
    const component = query.get('component') ?? '';
    const answer = (urls) => {
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.end(JSON.stringify(urls));
    };
    try {
      const linked = roots(component);
      answer(query.has('roots') ? linked : moduleClosure(server.environments.client.moduleGraph, base, linked, eager));
    } catch (error) {
      // a preload list is an optimisation: the page loads without it
      server.config.logger.warn(`component studio: preload list failed: ${error instanceof Error ? error.stack : error}`);
      answer([]);
    }
  };
}
