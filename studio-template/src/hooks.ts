// State the app keeps in sync with the outside: the catalog (refetched when
// the plugin says it changed), the project setup (preview + wrapper, and the
// repository's Storybook when it has one), the selection in the URL hash, and
// the live connection to the sandbox.
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, type ElementType } from 'react';
import config from 'virtual:studio/config';
import { CATALOG_EVENT, fetchCatalog, findComponent, findStory, landingRoute, type Catalog } from './catalog';
import type { Project } from './Canvas';
import { isElementType, readPreview } from './csf';
import { eventStreamUrl, LiveConnection, type LiveMessage } from './live';
import { importModule } from './modules';
import { formatHash, parseFlags, parseHash, routeKey, withValues, type PageFlags, type Route } from './route';
import type { SandboxStatus } from './StatusBanner';
import { createStorybookProject, installChannel, type StorybookRuntime } from './storybook';

export function useCatalog(): { catalog: Catalog | null; error: unknown } {
  const [state, setState] = useState<{ catalog: Catalog | null; error: unknown }>({ catalog: null, error: null });
  useEffect(() => {
    let controller = new AbortController();
    const load = (): void => {
      controller.abort();
      controller = new AbortController();
      const { signal } = controller;
      fetchCatalog(signal).then(
        (catalog) => !signal.aborted && setState({ catalog, error: null }),
        (error: unknown) => !signal.aborted && setState((s) => ({ catalog: s.catalog, error })),
      );
    };
    load();
    import.meta.hot?.on(CATALOG_EVENT, load);
    return () => {
      controller.abort();
      import.meta.hot?.off(CATALOG_EVENT, load);
    };
  }, []);
  return state;
}

const EMPTY_PROJECT: Project = { annotations: {}, wrapper: null, storybook: null, error: null };

/** The repository's Storybook runtime, imported only when the repository has Storybook. */
function importStorybook(): Promise<StorybookRuntime | null> {
  return config.storybook ? import('virtual:studio/storybook') : Promise.resolve(null);
}

export function useProject(preview: string | null | undefined): Project | null {
  const [project, setProject] = useState<Project | null>(null);
  useEffect(() => {
    if (preview === undefined) return; // catalog not loaded yet
    let current = true;
    // Storybook's channel is installed before the preview runs: decorators
    // such as addon-themes' announce their themes on it as they are created.
    const runtime = importStorybook().then((loaded) => {
      if (loaded) installChannel(loaded);
      return loaded;
    });
    Promise.all([
      runtime.then(() => (preview ? importModule(preview) : null)),
      config.wrapper ? importModule(config.wrapper) : Promise.resolve(null),
      runtime,
    ])
      .then(async ([previewModule, wrapperModule, runtime]): Promise<Project> => {
        const wrapper = wrapperModule?.default;
        if (wrapperModule && !isElementType(wrapper)) {
          return { ...EMPTY_PROJECT, error: new Error(`wrapper ${config.wrapper} has no default export component`) };
        }
        return {
          annotations: readPreview(previewModule),
          wrapper: (wrapper as ElementType | undefined) ?? null,
          storybook: runtime ? await createStorybookProject(runtime, previewModule) : null,
          error: null,
        };
      })
      .then(
        (next) => current && setProject(next),
        (error: unknown) => current && setProject({ ...EMPTY_PROJECT, error }),
      );
    return () => {
      current = false;
    };
  }, [preview]);
  return project;
}

function text(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { message?: unknown }).message === 'string') {
    return (value as { message: string }).message;
  }
  return null;
}

/**
 * Calls `listener` when the hash may have changed: on `hashchange`, and on
 * `popstate`, which is all Chrome fires going back to an entry whose query
 * string the page rewrote (replaceState). The listener ignores a repeat.
 */
function onLocationChange(listener: () => void): () => void {
  window.addEventListener('hashchange', listener);
  window.addEventListener('popstate', listener);
  return () => {
    window.removeEventListener('hashchange', listener);
    window.removeEventListener('popstate', listener);
  };
}

/**
 * The selection (from the URL hash) and the live connection, kept in step:
 * a selection made here is announced as `component-selected`, one announced by
 * another client is followed without being echoed back.
 */
export function useSelectionAndLive(catalog: Catalog | null, land: boolean): { route: Route; status: SandboxStatus } {
  const [route, setRoute] = useState<Route>(() => parseHash(window.location.hash));
  // `land`: a link naming no component shows the first story (landingRoute) and the URL
  // is rewritten to name it, so that a catalog change later does not move the page.
  const landing = land && catalog && !route.component ? landingRoute(catalog) : null;
  useEffect(() => {
    if (!landing) return;
    window.history.replaceState(window.history.state, '', formatHash(landing));
    setRoute(landing);
  }, [landing?.component, landing?.story]);
  const [status, setStatus] = useState<SandboxStatus>({ connection: 'connecting', retryInMs: null, status: null, message: null });
  const catalogRef = useRef(catalog);
  catalogRef.current = catalog;
  const liveRef = useRef<LiveConnection | null>(null);
  const followingRef = useRef<string | null>(null);

  const announce = useCallback((next: Route): void => {
    if (!next.component) return;
    const entry = catalogRef.current ? findComponent(catalogRef.current, next.component) : undefined;
    const story = entry && next.story ? findStory(entry, next.story) : undefined;
    liveRef.current?.send('component-selected', {
      component: entry?.id ?? next.component,
      story: story?.id ?? (next.story && !entry ? next.story : null),
    });
  }, []);

  const follow = useCallback((payload: Record<string, unknown> | undefined): void => {
    const component = typeof payload?.component === 'string' ? payload.component : null;
    if (!component) return;
    const storyKey = typeof payload?.story === 'string' ? payload.story : null;
    const entry = catalogRef.current ? findComponent(catalogRef.current, component) : undefined;
    const story = entry && storyKey ? findStory(entry, storyKey) : undefined;
    const hash = formatHash({ component: entry?.id ?? component, story: story?.exportName ?? storyKey });
    if (window.location.hash === hash) return;
    followingRef.current = hash;
    window.location.hash = hash;
  }, []);

  useEffect(() => {
    let shown = window.location.hash;
    const onHashChange = (): void => {
      if (window.location.hash === shown) return; // the popstate of a hash change
      shown = window.location.hash;
      const next = parseHash(shown);
      setRoute(next);
      if (followingRef.current === shown) {
        followingRef.current = null;
        return;
      }
      announce(next);
    };
    return onLocationChange(onHashChange);
  }, [announce]);

  useEffect(() => {
    if (!config.wsUrl) return;
    const onMessage = (message: LiveMessage): void => {
      const payload = message.payload ?? {};
      switch (message.type) {
        case 'hello':
        case 'status':
          if (typeof payload.status === 'string') {
            const detail = text(payload.message) ?? text(payload.error) ?? text(payload.reason);
            setStatus((s) => ({ ...s, status: payload.status as string, message: detail }));
          }
          break;
        case 'error':
          setStatus((s) => ({ ...s, message: text(payload.message) ?? text(payload.error) ?? 'error' }));
          break;
        case 'reload':
          window.location.reload();
          break;
        case 'component-selected':
          follow(payload);
          break;
        default:
          break;
      }
    };
    const live = new LiveConnection({
      url: eventStreamUrl(config.wsUrl, window.location.href),
      onMessage,
      onState: (connection, retryInMs) => setStatus((s) => ({ ...s, connection, retryInMs })),
    });
    liveRef.current = live;
    live.start();
    return () => {
      live.stop();
      liveRef.current = null;
    };
  }, [follow]);

  return { route: landing ?? route, status };
}

// Where the page notes, in its history entry, which story the entry's `?args=`
// were written for: a hash link keeps the query string of the page it leaves
// (args that are not the new story's), while going back to an entry brings
// back the args that were its own.
const ARGS_OWNER = 'studioArgsFor';

function argsOwnerOf(state: unknown): string | null {
  const owner = typeof state === 'object' && state !== null ? (state as Record<string, unknown>)[ARGS_OWNER] : undefined;
  return typeof owner === 'string' ? owner : null;
}

const shownKey = (): string => routeKey(parseHash(window.location.hash));

/**
 * The page's query flags (route.ts), kept in step with the URL: `setArgs` and
 * `setGlobals` rewrite `?args=` / `?globals=` in place (no history entry, the
 * hash and other flags kept). `?args=` belong to one story (`routeKey`): the
 * flags hold them only while `shown` (the route on screen) is that story, and
 * selecting another story drops them from the URL. Globals stay.
 */
export function usePageFlags(shown: Route): {
  flags: PageFlags;
  setArgs: (args: Record<string, unknown>) => void;
  setGlobals: (globals: Record<string, unknown>) => void;
} {
  const [state, setState] = useState<{ flags: PageFlags; argsFor: string }>(() => ({
    flags: parseFlags(window.location.search, window.location.pathname),
    // a link's args are the story's it names
    argsFor: shownKey(),
  }));
  const globalsRef = useRef(state.flags.globals);
  globalsRef.current = state.flags.globals;

  const write = useCallback((update: { args?: Record<string, unknown>; globals?: Record<string, unknown> }): void => {
    const { pathname, search, hash } = window.location;
    const next = withValues(search, update);
    const owner = shownKey();
    if (next !== search || argsOwnerOf(window.history.state) !== owner) {
      const entryState: unknown = window.history.state;
      const base = typeof entryState === 'object' && entryState !== null ? entryState : {};
      window.history.replaceState({ ...base, [ARGS_OWNER]: owner }, '', `${pathname}${next}${hash}`);
    }
    setState({ flags: parseFlags(next, pathname), argsFor: owner });
  }, []);

  // A layout effect: its listener is added before the selection's (a passive
  // effect) and so runs first. The args of the entry gone back to are then in
  // the flags when the canvas composes the story the selection changes to.
  useLayoutEffect(() => {
    // the entry of a link with args: back here later, they are this story's
    if (new URLSearchParams(window.location.search).has('args')) write({});
    let last = shownKey();
    const onHashChange = (): void => {
      if (shownKey() === last) return;
      last = shownKey();
      const own = argsOwnerOf(window.history.state) === last;
      // the globals on screen stay, whatever the entry's URL held
      write(own ? { globals: globalsRef.current } : { args: {}, globals: globalsRef.current });
    };
    return onLocationChange(onHashChange);
  }, [write]);

  const setArgs = useCallback((args: Record<string, unknown>) => write({ args }), [write]);
  const setGlobals = useCallback((globals: Record<string, unknown>) => write({ globals }), [write]);
  const { flags, argsFor } = state;
  const current = routeKey(shown);
  // until both the route and the flags have caught up with a new hash, the args are no one's
  const owned = useMemo(() => (argsFor === current ? flags : { ...flags, args: {} }), [flags, argsFor, current]);
  return { flags: owned, setArgs, setGlobals };
}
