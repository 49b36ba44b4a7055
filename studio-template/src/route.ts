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

/**
 * The route that shows nothing: a render browser's page (studio/render/browser.py,
 * _IDLE_BLANK) whose story keeps animating goes there once no verdict looks at
 * it, so that it stops drawing frames. Component ids are the
 * components' names (JavaScript identifiers, or a title's last part): a title
 * of `~blank` would be the one hidden behind it.
 */
export const BLANK_COMPONENT = '~blank';

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
 *   panel (for embedding and screenshots): `?full#/Button/Primary`.
 *
 * `iframe.html?id=<storyId>` is the full-canvas view of the story with that
 * Storybook id (Storybook's own address of a story alone, which the tools and
 * screenshot scripts that know Storybook use), with the same flags.
 */
export interface PageFlags {
  play: boolean;
  full: boolean;
  args: Record<string, unknown>;
  globals: Record<string, unknown>;
  /** On `iframe.html`: the Storybook story id it asks for (`''` when it names none); null elsewhere. */
  storyId: string | null;
}

const on = (params: URLSearchParams, name: string): boolean => params.has(name) && !['0', 'false'].includes(params.get(name) ?? '');

/** Whether the page was opened as Storybook's `iframe.html` (served by Vite's page fallback like any other path). */
export const isIframePath = (pathname: string): boolean => /(^|\/)iframe\.html$/.test(pathname);

export function parseFlags(search: string, pathname = '/'): PageFlags {
  const params = new URLSearchParams(search);
  const storyId = isIframePath(pathname) ? (params.get('id') ?? '').trim() : null;
  return {
    play: on(params, 'play'),
    full: storyId !== null || on(params, 'full'),
    args: parseValues(params.get('args')),
    globals: parseValues(params.get('globals')),
    storyId,
  };
}

/**
 * The story the URL's args are written for, as a key: the canonical hash of
 * its route (`#/` on iframe.html, whose story is its `id`). Args apply only
 * to that story: another story starts from its own args, as in Storybook.
 */
export const routeKey = (route: Route): string => formatHash(route);

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
