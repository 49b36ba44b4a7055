// The component catalog served by the studio plugin (<base>__studio/components.json)
// and the lookups the app does on it.

import config from 'virtual:studio/config';

export type Args = Record<string, unknown>;

export interface StoryEntry {
  id: string;
  name: string;
  exportName: string;
  /** Literal args (meta.args merged with the story's); the real module's values win at render. */
  args: Args;
  /** The static parts of the declared argTypes (meta's under the story's), when there are any;
   * what the page renders with is what Storybook (or the CSF runner) infers at composition. */
  argTypes?: Record<string, Args>;
}

export interface ComponentEntry {
  id: string;
  name: string;
  /** Repo-relative path of the component module (of the stories module for stories-only entries). */
  module: string;
  /** Value exports of the module, "default" for a default export. */
  exports: string[];
  stories: StoryEntry[];
  storiesModule: string | null;
}

export interface Catalog {
  components: ComponentEntry[];
  preview: string | null;
  generatedAt: string;
}

export const CATALOG_URL = config.catalogUrl;
/** Custom HMR event sent by the plugin when components or stories were added, removed or renamed. */
export const CATALOG_EVENT = 'studio:catalog-changed';

// Set by the inline script of index.html (plugin/early-load.mjs): the catalog
// request it started while the page was parsed.
const EARLY_CATALOG_KEY = '__studioCatalogResponse';

declare global {
  interface Window {
    [EARLY_CATALOG_KEY]?: Promise<Response>;
  }
}

/** The catalog request index.html started, once; later loads ask again. */
function takeEarlyResponse(): Promise<Response> | undefined {
  const early = window[EARLY_CATALOG_KEY];
  delete window[EARLY_CATALOG_KEY];
  return early;
}

export async function fetchCatalog(signal?: AbortSignal): Promise<Catalog> {
  const response = await (takeEarlyResponse() ?? fetch(CATALOG_URL, { cache: 'no-store', signal }));
  if (!response.ok) throw new Error(`${CATALOG_URL} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as Catalog;
}

const fold = (text: string): string => text.toLowerCase().replace(/[^a-z0-9]/g, '');

/**
 * The component a route names: by id, else by name, else by module path,
 * else case-insensitively, so that hand-typed deep links work.
 */
export function findComponent(catalog: Catalog, key: string): ComponentEntry | undefined {
  const { components } = catalog;
  return (
    components.find((c) => c.id === key) ??
    components.find((c) => c.name === key) ??
    components.find((c) => c.module === key) ??
    components.find((c) => fold(c.id) === fold(key) || fold(c.name) === fold(key))
  );
}

/**
 * What a page opened without a component in its link shows, as Storybook opens
 * its first story: the first component (the sidebar's order) that has stories,
 * else the first one. The same rule as findEntry's for an empty name in
 * plugin/early-load.mjs, which preloads it.
 */
export function landingRoute(catalog: Catalog): { component: string; story: string | null } | null {
  const entry = catalog.components.find((c) => c.stories.length > 0) ?? catalog.components[0];
  return entry ? { component: entry.id, story: entry.stories[0]?.exportName ?? null } : null;
}

/** A story of `component` by export name, story id or display name. */
export function findStory(component: ComponentEntry, key: string): StoryEntry | undefined {
  const { stories } = component;
  return (
    stories.find((s) => s.exportName === key) ??
    stories.find((s) => s.id === key) ??
    stories.find((s) => s.name === key) ??
    stories.find((s) => fold(s.exportName) === fold(key) || fold(s.name) === fold(key))
  );
}
