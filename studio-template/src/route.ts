// Selection in the URL hash: `#/<component>` or `#/<component>/<story>`, so a
// page can be deep-linked and the browser's back button walks the selection.

export interface Route {
  component: string | null;
  story: string | null;
}

export function parseHash(hash: string): Route {
  const path = hash.replace(/^#\/?/, '');
  if (!path) return { component: null, story: null };
  const [component, story] = path.split('/').map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { component: component || null, story: story || null };
}

export function formatHash(route: Route): string {
  if (!route.component) return '#/';
  const head = `#/${encodeURIComponent(route.component)}`;
  return route.story ? `${head}/${encodeURIComponent(route.story)}` : head;
}
