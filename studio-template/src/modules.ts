// Loading the repository's modules into the page. They live outside Vite's
// root (.studio/), so they are imported through `/@fs/<repoRoot>/...` URLs;
// Vite transforms them like any source file, React Fast Refresh included.
import config from 'virtual:studio/config';
import { isElementType } from './csf';
import type { ComponentEntry } from './catalog';

export type ModuleRecord = Record<string, unknown>;

/**
 * The full URL of a repository module. Full, not a path: Vite adds `?import`
 * to a path-only dynamic import, and the browser would then hold a second
 * instance of a module that other modules import statically (a context
 * provider in the wrapper and the components reading it would not match).
 */
export function moduleUrl(repoRelative: string): string {
  return new URL(encodeURI(config.fsBase + repoRelative), window.location.origin).href;
}

/**
 * Imports a repository module. `attempt` > 0 busts the browser's module map:
 * a module that failed to load is not fetched again under the same URL.
 */
export async function importModule(repoRelative: string, attempt = 0): Promise<ModuleRecord> {
  const url = moduleUrl(repoRelative);
  // String(): the prebuilt shell's bundler turns an import of a conditional
  // (even through a variable) into two imports without the comment, and Vite
  // then warns on every first page load. A call keeps it one import.
  const target = attempt > 0 ? `${url}?t=${Date.now()}` : url;
  return (await import(/* @vite-ignore */ String(target))) as ModuleRecord;
}

/** The export a catalog entry renders: the one it is named after, else the default, else its first component export. */
export function pickComponent(mod: ModuleRecord, entry: ComponentEntry): unknown {
  if (isElementType(mod[entry.name])) return mod[entry.name];
  if (isElementType(mod.default)) return mod.default;
  const name = entry.exports.find((e) => /^[A-Z]/.test(e) && isElementType(mod[e]));
  return name ? mod[name] : undefined;
}
