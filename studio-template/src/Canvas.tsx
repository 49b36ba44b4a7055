// Renders the selected component (or one of its stories) alone, inside the
// project's decorators and wrapper, behind an error boundary: composed by the
// repository's own Storybook when it has one (storybook.tsx), by the studio's
// CSF runner otherwise (csf.ts).
import { createElement, useCallback, useEffect, useMemo, useRef, useState, type ElementType, type ReactNode } from 'react';
import type { ComponentEntry, StoryEntry } from './catalog';
import { prepare, readMeta, readStory, type Annotations, type Prepared } from './csf';
import { ErrorBoundary, ErrorPanel } from './ErrorPanel';
import { importModule, pickComponent, type ModuleRecord } from './modules';
import { parseFlags } from './route';
import { ComposedStory, useComposition, type ComposeInput, type PlayState, type StoryContext, type StorybookProject } from './storybook';

/** The parts every render shares: `.storybook/preview` annotations, the configured wrapper, the repository's Storybook. */
export interface Project {
  annotations: Annotations;
  wrapper: ElementType | null;
  /** The repository's Storybook when it composes the stories, else null (the CSF runner). */
  storybook: StorybookProject | null;
  error: unknown;
}

type Loaded =
  | { status: 'loading' }
  | { status: 'error'; error: unknown }
  | { status: 'ready'; component: ModuleRecord | null; stories: ModuleRecord | null };

function Run({ prepared }: { prepared: Prepared }): ReactNode {
  return prepared.run(prepared.context);
}

function useModules(entry: ComponentEntry): Loaded {
  const [loaded, setLoaded] = useState<Loaded>({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const failed = loaded.status === 'error';

  // A module that failed to load (syntax error mid-edit) is retried after the
  // next successful hot update instead of needing a manual reload.
  useEffect(() => {
    if (!failed || !import.meta.hot) return;
    const retry = (): void => setAttempt((n) => n + 1);
    import.meta.hot.on('vite:afterUpdate', retry);
    return () => import.meta.hot?.off('vite:afterUpdate', retry);
  }, [failed]);

  useEffect(() => {
    let current = true;
    setLoaded({ status: 'loading' });
    const isComponentModule = entry.exports.length > 0;
    Promise.all([
      isComponentModule ? importModule(entry.module, attempt) : Promise.resolve(null),
      entry.storiesModule ? importModule(entry.storiesModule, attempt) : Promise.resolve(null),
    ]).then(
      ([component, stories]) => current && setLoaded({ status: 'ready', component, stories }),
      (error: unknown) => current && setLoaded({ status: 'error', error }),
    );
    return () => {
      current = false;
    };
  }, [entry.module, entry.storiesModule, entry.exports.length, attempt]);
  return loaded;
}

/** The story of `entry` to compose with the repository's Storybook (the bare component without `story`). */
function composeInput(entry: ComponentEntry, story: StoryEntry | null, component: unknown, stories: ModuleRecord | null, globals: ModuleRecord): ComposeInput | Error {
  if (!story) return { exportName: entry.name, title: entry.name, meta: { component }, story: {}, globals };
  const exported = stories?.[story.exportName];
  if (exported === undefined) return new Error(`${entry.storiesModule ?? entry.module} has no story export "${story.exportName}"`);
  const meta = stories?.default;
  const plain = typeof meta === 'object' && meta !== null && Object.getPrototypeOf(meta) === Object.prototype ? (meta as ModuleRecord) : null;
  // as the CSF runner does: a meta without `component` renders the module the story belongs to
  const withComponent = plain && plain.component === undefined && component !== undefined ? { ...plain, component } : (meta as ModuleRecord | undefined) ?? {};
  return { exportName: story.exportName, title: entry.name, meta: withComponent, story: exported, globals };
}

export function Canvas({
  entry,
  story,
  project,
}: {
  entry: ComponentEntry;
  story: StoryEntry | null;
  /** null while .storybook/preview and the wrapper are still loading */
  project: Project | null;
}): ReactNode {
  const loaded = useModules(entry);
  const canvasRef = useRef<HTMLDivElement>(null);
  const flags = useMemo(() => parseFlags(window.location.search), []);
  const annotations = project?.annotations;
  const storybook = project?.storybook ?? null;

  const prepared = useMemo((): Prepared | Error | null => {
    if (loaded.status !== 'ready' || !annotations || storybook) return null;
    const component = loaded.component ? pickComponent(loaded.component, entry) : undefined;
    if (!story) {
      return prepare({ id: entry.id, name: entry.name, title: entry.name, component, project: annotations });
    }
    const meta = loaded.stories ? readMeta(loaded.stories) : {};
    const storyAnnotations = loaded.stories ? readStory(loaded.stories, story.exportName) : undefined;
    if (!storyAnnotations) return new Error(`${entry.storiesModule ?? entry.module} has no story export "${story.exportName}"`);
    return prepare({
      id: story.id,
      name: story.name,
      title: meta.title ?? entry.name,
      component: meta.component ?? component,
      project: annotations,
      meta,
      story: storyAnnotations,
    });
  }, [loaded, entry, story, annotations, storybook]);

  const input = useMemo((): ComposeInput | Error | null => {
    if (loaded.status !== 'ready' || !storybook) return null;
    const component = loaded.component ? pickComponent(loaded.component, entry) : undefined;
    return composeInput(entry, story, component, loaded.stories, flags.globals);
  }, [loaded, entry, story, storybook, flags]);
  const composition = useComposition(storybook, input instanceof Error ? null : input);
  const composed = composition.status === 'ready' ? composition.context : null;

  const [play, setPlay] = useState<{ context: StoryContext; state: PlayState; error?: unknown } | null>(null);
  const onPlay = useCallback((state: PlayState, error?: unknown) => composed && setPlay({ context: composed, state, error }), [composed]);
  const playState = play && play.context === composed ? play : null;

  const wrap = (rendered: ReactNode): ReactNode => (
    <ErrorBoundary key={`${entry.id}/${story?.exportName ?? ''}`}>{project?.wrapper ? createElement(project.wrapper, null, rendered) : rendered}</ErrorBoundary>
  );
  const notFound = prepared instanceof Error ? prepared : input instanceof Error ? input : null;
  let content: ReactNode;
  let failed = Boolean(project?.error) || loaded.status === 'error';
  if (project?.error) {
    content = <ErrorPanel title="Could not load the project setup (.storybook/preview or wrapper)" error={project.error} />;
  } else if (loaded.status === 'error') {
    content = <ErrorPanel title={`Could not load ${entry.module}`} error={loaded.error} />;
  } else if (notFound) {
    content = <ErrorPanel title="Story not found" error={notFound} />;
  } else if (storybook && composition.status === 'error') {
    failed = true;
    content = <ErrorPanel title="Storybook could not prepare the story (loaders, beforeEach)" error={composition.error} />;
  } else if (storybook && composed) {
    content = (
      <>
        {wrap(<ComposedStory key={composition.status === 'ready' ? composition.key : 0} project={storybook} context={composed} canvas={canvasRef} play={flags.play} onPlay={onPlay} />)}
        {playState?.state === 'failed' && <ErrorPanel title="Play function failed" error={playState.error} />}
      </>
    );
  } else if (prepared && !(prepared instanceof Error) && project) {
    content = wrap(<Run prepared={prepared} />);
  }
  // Storybook's `parameters.layout`: padded (default), centered or fullscreen
  const parameters = composed ? composed.parameters : prepared && !(prepared instanceof Error) ? prepared.context.parameters : undefined;
  const layout = parameters?.layout;
  const state = failed ? 'error' : content ? 'ready' : 'loading';

  return (
    <div
      ref={canvasRef}
      className="studio-canvas"
      data-testid="studio-canvas"
      data-component={entry.id}
      data-story={story?.id ?? ''}
      data-state={state}
      data-layout={typeof layout === 'string' ? layout : 'padded'}
      data-runner={storybook ? 'storybook' : 'csf'}
      data-play={playState?.state ?? ''}
    >
      {content}
    </div>
  );
}
