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

/**
 * Flags of the page's query string (before the hash), for stories composed by
 * the repository's Storybook: `play` runs the story's play function after it
 * rendered (`?play`, `?play=1`; never by default), `globals` sets globals the
 * way Storybook's URL does (`?globals=theme:dark;locale:fr`, `!true`,
 * `!false`, `!null` and `!undefined` for those values).
 */
export interface PageFlags {
  play: boolean;
  globals: Record<string, unknown>;
}

const SPECIAL_VALUES: Record<string, unknown> = { '!true': true, '!false': false, '!null': null, '!undefined': undefined };

export function parseFlags(search: string): PageFlags {
  const params = new URLSearchParams(search);
  const play = params.has('play') && !['0', 'false'].includes(params.get('play') ?? '');
  const globals: Record<string, unknown> = {};
  for (const pair of (params.get('globals') ?? '').split(';')) {
    const at = pair.indexOf(':');
    if (at <= 0) continue;
    const value = pair.slice(at + 1);
    globals[pair.slice(0, at)] = value in SPECIAL_VALUES ? SPECIAL_VALUES[value] : value;
  }
  return { play, globals };
}
