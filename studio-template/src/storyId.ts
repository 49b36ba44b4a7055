// Storybook's story ids (`page-showcase--default`: the sanitized title, or
// the meta's `id`, then the export name in start case, sanitized), and the
// story of the catalog an id names, for `iframe.html?id=` (route.ts).
//
// The catalog's own story ids are made from the component's name, not from
// the stories' title, which only the stories module knows: the page imports
// the stories modules that may hold the story (the likeliest first; the one
// it finds is the one it renders next, already loaded) and computes their ids.
import { useEffect, useState } from 'react';
import type { Catalog, ComponentEntry, StoryEntry } from './catalog';
import { importModule, type ModuleRecord } from './modules';

// The characters Storybook's sanitize turns into dashes.
const SEPARATORS = new Set(" ’–—―′¿'`~!@#$%^&*()_|+-=?;:\",.<>{}[]\\/");

/** Storybook's sanitize: lower case, separators to single dashes, none at either end. */
export function sanitize(text: string): string {
  const dashed = [...text.toLowerCase()].map((c) => (SEPARATORS.has(c) ? '-' : c)).join('');
  return dashed.replace(/-+/g, '-').replace(/^-|-$/g, '');
}

/** Storybook's storyNameFromExport: `ClickedOnce` -> `Clicked Once`, `size_2x` -> `Size 2 X`. */
export function storyNameFromExport(exportName: string): string {
  return exportName
    .replace(/[_.-]/g, ' ')
    .replace(/([^\n])([A-Z])([a-z])/g, '$1 $2$3')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .replace(/([a-z])([0-9])/gi, '$1 $2')
    .replace(/([0-9])([a-z])/gi, '$1 $2')
    .replace(/(\s|^)(\w)/g, (_, space: string, first: string) => `${space}${first.toUpperCase()}`)
    .replace(/ +/g, ' ')
    .trim();
}

const isObject = (value: unknown): value is ModuleRecord => typeof value === 'object' && value !== null;

/**
 * The Storybook id of export `exportName` of a stories module: the story's
 * `parameters.__id`, else from the meta's `id` or `title`. Null for a meta
 * without either (Storybook titles it from the file's path and its `stories`
 * globs, which the page does not know).
 */
export function storybookId(stories: ModuleRecord, exportName: string): string | null {
  const story = stories[exportName];
  const parameters = isObject(story) || typeof story === 'function' ? (story as ModuleRecord).parameters : undefined;
  if (isObject(parameters) && typeof parameters.__id === 'string') return parameters.__id;
  const meta = isObject(stories.default) ? stories.default : {};
  const kind = typeof meta.id === 'string' && meta.id ? meta.id : typeof meta.title === 'string' && meta.title ? meta.title : null;
  return kind === null ? null : `${sanitize(kind)}--${sanitize(storyNameFromExport(exportName))}`;
}

export interface Found {
  component: ComponentEntry;
  story: StoryEntry;
}

/**
 * The catalog's story with Storybook id `id`, or null. Candidates are the
 * stories whose export gives the id's story part, the likeliest first (the
 * catalog's id is the same, or the title ends with the component's name); each
 * is confirmed by its module's title. A candidate whose module has no title
 * is taken when no titled one matches and its name ends the id's title part.
 */
export async function findByStorybookId(catalog: Catalog, id: string, load: (module: string) => Promise<ModuleRecord> = importModule): Promise<Found | null> {
  const at = id.indexOf('--');
  if (at <= 0) return null;
  const kindPart = id.slice(0, at);
  const storyPart = id.slice(at + 2);
  const likely = (component: ComponentEntry, story: StoryEntry): boolean => {
    const name = sanitize(component.name);
    return story.id === id || kindPart === name || kindPart.endsWith(`-${name}`);
  };
  const candidates = catalog.components
    .flatMap((component) => component.stories.map((story) => ({ component, story })))
    .filter(({ component, story }) => component.storiesModule !== null && sanitize(storyNameFromExport(story.exportName)) === storyPart)
    .sort((a, b) => Number(likely(b.component, b.story)) - Number(likely(a.component, a.story)));
  let untitled: Found | null = null;
  const failures: unknown[] = [];
  for (const candidate of candidates) {
    let stories: ModuleRecord;
    try {
      stories = await load(candidate.component.storiesModule as string);
    } catch (error) {
      // another module's syntax error does not hide the story; if no other has it, it is reported
      failures.push(error);
      continue;
    }
    const computed = storybookId(stories, candidate.story.exportName);
    if (computed === id) return candidate;
    if (computed === null && untitled === null && likely(candidate.component, candidate.story)) untitled = candidate;
  }
  if (!untitled && failures.length > 0) throw failures[0];
  return untitled;
}

export type StoryIdLookup = { status: 'pending' } | { status: 'found'; found: Found } | { status: 'missing' } | { status: 'error'; error: unknown };

/** The story of `id` in `catalog` (again when the catalog changes); pending without a catalog or id. */
export function useStorybookId(catalog: Catalog | null, id: string | null): StoryIdLookup {
  const [done, setDone] = useState<{ catalog: Catalog; id: string; lookup: StoryIdLookup } | null>(null);
  useEffect(() => {
    if (!catalog || !id) return;
    let current = true;
    findByStorybookId(catalog, id).then(
      (found) => current && setDone({ catalog, id, lookup: found ? { status: 'found', found } : { status: 'missing' } }),
      (error: unknown) => current && setDone({ catalog, id, lookup: { status: 'error', error } }),
    );
    return () => {
      current = false;
    };
  }, [catalog, id]);
  // an updated catalog keeps the story on screen while it is looked up again
  return done && done.id === id ? done.lookup : { status: 'pending' };
}
