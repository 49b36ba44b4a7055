import { formatValues, parseValues } from './urlArgs';

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
 * Flags of the page's query string (before the hash), in Storybook's URL
 * format where Storybook has one:
 * - `args=label:Hi;disabled:!true` args over the story's own (urlArgs.ts),
 *   written by the controls panel; they belong to the story in the hash and
 *   are dropped when another story is selected;
 * - `globals=theme:dark;locale:fr` globals (toolbar), kept across stories;
 * - `play` runs the story's play function after it rendered (`?play`, `?play=1`; never by default);
 * - `full` the full-canvas view: the story alone, no sidebar, toolbar or
 *   panel (for embedding and screenshots; Storybook's `iframe.html?id=`):
 *   `?full#/Button/Primary`.
 */
export interface PageFlags {
  play: boolean;
  full: boolean;
  args: Record<string, unknown>;
  globals: Record<string, unknown>;
}

const on = (params: URLSearchParams, name: string): boolean => params.has(name) && !['0', 'false'].includes(params.get(name) ?? '');

export function parseFlags(search: string): PageFlags {
  const params = new URLSearchParams(search);
  return { play: on(params, 'play'), full: on(params, 'full'), args: parseValues(params.get('args')), globals: parseValues(params.get('globals')) };
}

/**
 * `search` with `args` and/or `globals` replaced (removed when empty). Written
 * by hand rather than by URLSearchParams, which would percent-encode the `:`
 * and `;` that make Storybook's format readable.
 */
export function withValues(search: string, update: { args?: Record<string, unknown>; globals?: Record<string, unknown> }): string {
  const kept = search
    .replace(/^\?/, '')
    .split('&')
    .filter((part) => part && !Object.keys(update).some((name) => part === name || part.startsWith(`${name}=`)));
  for (const [name, values] of Object.entries(update)) {
    const text = values ? formatValues(values) : '';
    if (text) kept.push(`${name}=${encodeURI(text).replace(/#/g, '%23').replace(/&/g, '%26')}`);
  }
  return kept.length > 0 ? `?${kept.join('&')}` : '';
}

/**
 * The story the URL's args are written for, as a key: the canonical hash of
 * its route. Args apply only to that story: another story starts from its
 * own args, as in Storybook.
 */
export const routeKey = (route: Route): string => formatHash(route);
