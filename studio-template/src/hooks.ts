// State the app keeps in sync with the outside: the catalog (refetched when
// the plugin says it changed), the project setup (preview + wrapper, and the
// repository's Storybook when it has one), the selection in the URL hash, and
// the live connection to the sandbox.
import { useCallback, useEffect, useRef, useState, type ElementType } from 'react';
import config from 'virtual:studio/config';
import { CATALOG_EVENT, fetchCatalog, findComponent, findStory, type Catalog } from './catalog';
import type { Project } from './Canvas';
import { isElementType, readPreview } from './csf';
import { LiveConnection, type LiveMessage } from './live';
import { importModule } from './modules';
import { formatHash, parseFlags, parseHash, withValues, type PageFlags, type Route } from './route';
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
 * The selection (from the URL hash) and the live connection, kept in step:
 * a selection made here is announced as `component-selected`, one announced by
 * another client is followed without being echoed back.
 */
export function useSelectionAndLive(catalog: Catalog | null): { route: Route; status: SandboxStatus } {
  const [route, setRoute] = useState<Route>(() => parseHash(window.location.hash));
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
    const onHashChange = (): void => {
      const next = parseHash(window.location.hash);
      setRoute(next);
      if (followingRef.current === window.location.hash) {
        followingRef.current = null;
        return;
      }
      announce(next);
    };
    window.addEventListener('hashchange', onHashChange);
    return () => window.removeEventListener('hashchange', onHashChange);
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
      url: config.wsUrl,
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

  return { route, status };
}

/**
 * The page's query flags (route.ts), kept in step with the URL: `setArgs` and
 * `setGlobals` rewrite `?args=` / `?globals=` in place (no history entry, the
 * hash and other flags kept), and selecting another story drops the args,
 * which belonged to the previous one.
 */
export function usePageFlags(): {
  flags: PageFlags;
  setArgs: (args: Record<string, unknown>) => void;
  setGlobals: (globals: Record<string, unknown>) => void;
} {
  const [flags, setFlags] = useState<PageFlags>(() => parseFlags(window.location.search));
  const write = useCallback((update: { args?: Record<string, unknown>; globals?: Record<string, unknown> }): void => {
    const search = withValues(window.location.search, update);
    if (search !== window.location.search) window.history.replaceState(window.history.state, '', `${window.location.pathname}${search}${window.location.hash}`);
    setFlags(parseFlags(search));
  }, []);

  useEffect(() => {
    let shown = parseHash(window.location.hash);
    const onHashChange = (): void => {
      const next = parseHash(window.location.hash);
      const moved = next.component !== shown.component || next.story !== shown.story;
      shown = next;
      if (moved && new URLSearchParams(window.location.search).has('args')) write({ args: {} });
    };
    window.addEventListener('hashchange', onHashChange);
    return () => window.removeEventListener('hashchange', onHashChange);
  }, [write]);

  const setArgs = useCallback((args: Record<string, unknown>) => write({ args }), [write]);
  const setGlobals = useCallback((globals: Record<string, unknown>) => write({ globals }), [write]);
  return { flags, setArgs, setGlobals };
}
