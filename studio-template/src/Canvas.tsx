// Renders the selected component (or one of its stories) alone, inside the
// project's decorators and wrapper, behind an error boundary: composed by the
// repository's own Storybook when it has one (storybook.tsx), by the studio's
// CSF runner otherwise (csf.ts).
//
// Around the story: the globals toolbar above it, the controls panel below it
// (both left out in the full-canvas view), and the story's live args and
// globals, written to the page's URL in Storybook's format.
import { createElement, useCallback, useEffect, useMemo, useRef, useState, type CSSProperties, type ElementType, type ReactNode } from 'react';
import type { Args, ComponentEntry, StoryEntry } from './catalog';
import { controlRows, inferArgTypes } from './controls';
import { ControlsPanel } from './Controls';
import { prepare, readMeta, readStory, startingGlobals, type Annotations, type Prepared } from './csf';
import { ErrorBoundary, ErrorPanel } from './ErrorPanel';
import { importModule, pickComponent, type ModuleRecord } from './modules';
import { parseHash, type PageFlags } from './route';
import { ComposedStory, prepareArgs, useComposition, type ComposeInput, type LiveState, type PlayState, type StoryContext, type StorybookProject } from './storybook';
import { canvasFrame, toolbarMenus } from './toolbar';
import { Toolbar } from './Toolbar';
import { changedArgs } from './urlArgs';

const isRecord = (value: unknown): value is ModuleRecord => typeof value === 'object' && value !== null && !Array.isArray(value);

// Storybook's channel events the panel and toolbar send, as its manager does.
const UPDATE_STORY_ARGS = 'updateStoryArgs';
const RESET_STORY_ARGS = 'resetStoryArgs';
const UPDATE_GLOBALS = 'updateGlobals';

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

/** The page's URL flags and how to write args and globals back to it (hooks.ts usePageFlags). */
export interface PageState {
  flags: PageFlags;
  setArgs: (args: Args) => void;
  setGlobals: (globals: ModuleRecord) => void;
}

/** Args and globals of the story on the canvas, for the story composition they belong to. */
interface Live {
  owner: unknown;
  state: LiveState;
}

export function Canvas({
  entry,
  story,
  project,
  page,
}: {
  entry: ComponentEntry;
  story: StoryEntry | null;
  /** null while .storybook/preview and the wrapper are still loading */
  project: Project | null;
  page: PageState;
}): ReactNode {
  const loaded = useModules(entry);
  const canvasRef = useRef<HTMLDivElement>(null);
  const { flags, setArgs, setGlobals } = page;
  // read when a story is composed, not a reason to compose it again: the
  // panel and toolbar write them while the story stays on screen
  const flagsRef = useRef(flags);
  flagsRef.current = flags;
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
    return composeInput(entry, story, component, loaded.stories, flagsRef.current.globals);
  }, [loaded, entry, story, storybook]);
  // the URL's args when this story was chosen (later URL changes are the story's own edits)
  const urlArgs = useMemo(() => (input ? flagsRef.current.args : {}), [input]);
  const composition = useComposition(storybook, input instanceof Error ? null : input);
  const composed = composition.status === 'ready' ? composition.context : null;

  const [play, setPlay] = useState<{ context: StoryContext; state: PlayState; error?: unknown } | null>(null);
  const onPlay = useCallback((state: PlayState, error?: unknown) => composed && setPlay({ context: composed, state, error }), [composed]);
  const playState = play && play.context === composed ? play : null;

  // -- args and globals ----------------------------------------------------------------------
  const [live, setLive] = useState<Live | null>(null);
  const owner = storybook ? composed : prepared instanceof Error ? null : prepared;
  const onState = useCallback((state: LiveState) => setLive({ owner: composed, state }), [composed]);
  // the story's own globals (Storybook 9+) win over the URL's and the toolbar's
  const storyGlobals = useMemo((): ModuleRecord => {
    if (composed) return isRecord(composed.storyGlobals) ? composed.storyGlobals : {};
    return prepared && !(prepared instanceof Error) ? prepared.context.storyGlobals : {};
  }, [composed, prepared]);
  // the CSF runner's story starts with the URL's args and globals
  const csfStart = useMemo((): LiveState | null => {
    if (!prepared || prepared instanceof Error || !annotations) return null;
    const { args, globals } = flagsRef.current;
    return { args: { ...prepared.context.args, ...args }, globals: { ...startingGlobals(annotations, globals), ...prepared.context.storyGlobals } };
  }, [prepared, annotations]);
  const current: LiveState | null = live && live.owner === owner && owner !== null ? live.state : storybook ? null : csfStart;
  const initialArgs: Args = composed ? composed.initialArgs : prepared && !(prepared instanceof Error) ? prepared.context.args : {};
  const argTypes = useMemo((): ModuleRecord => {
    if (composed) return composed.argTypes as ModuleRecord;
    return prepared && !(prepared instanceof Error) ? inferArgTypes(prepared.context.argTypes, prepared.context.args) : {};
  }, [composed, prepared]);

  // the args that differ from the story's own go to the URL, whoever changed them (panel, useArgs)
  const currentArgs = current?.args;
  // (not the args of a story the page has already left: they are dropped from the URL then)
  const storyKey = story?.exportName ?? null;
  useEffect(() => {
    const shown = parseHash(window.location.hash);
    const stillShown = shown.story === storyKey || (shown.story !== null && storyKey !== null && shown.story === story?.id);
    if (currentArgs && stillShown) setArgs(changedArgs(initialArgs, currentArgs));
  }, [currentArgs, initialArgs, setArgs, storyKey, story]);

  const changeArg = useCallback(
    (name: string, value: unknown): void => {
      if (storybook && composed) storybook.channel.emit(UPDATE_STORY_ARGS, { storyId: composed.id, updatedArgs: { [name]: value } });
      else if (current) setLive({ owner, state: { ...current, args: { ...current.args, [name]: value } } });
    },
    [storybook, composed, current, owner],
  );
  const resetArgs = useCallback((): void => {
    if (storybook && composed) storybook.channel.emit(RESET_STORY_ARGS, { storyId: composed.id });
    else if (current) setLive({ owner, state: { ...current, args: { ...initialArgs } } });
  }, [storybook, composed, current, owner, initialArgs]);
  const changeGlobal = useCallback(
    (name: string, value: unknown): void => {
      if (Object.hasOwn(storyGlobals, name)) return; // locked by the story, as its toolbar item shows
      if (storybook) storybook.channel.emit(UPDATE_GLOBALS, { globals: { [name]: value } });
      else if (current) setLive({ owner, state: { ...current, globals: { ...current.globals, [name]: value } } });
      setGlobals({ ...flagsRef.current.globals, [name]: value });
    },
    [storybook, current, owner, setGlobals, storyGlobals],
  );

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
        {wrap(
          <ComposedStory
            key={composition.status === 'ready' ? composition.key : 0}
            project={storybook}
            context={composed}
            canvas={canvasRef}
            play={flags.play}
            onPlay={onPlay}
            urlArgs={urlArgs}
            onState={onState}
          />,
        )}
        {playState?.state === 'failed' && <ErrorPanel title="Play function failed" error={playState.error} />}
      </>
    );
  } else if (prepared && !(prepared instanceof Error) && project && current) {
    const { args, globals } = current;
    const context = { ...prepared.context, args: prepareArgs(args, argTypes as StoryContext['argTypes'], globals), globals };
    content = wrap(<Run prepared={{ ...prepared, context }} />);
  }
  // Storybook's `parameters.layout`: padded (default), centered or fullscreen
  const parameters = composed ? composed.parameters : prepared && !(prepared instanceof Error) ? prepared.context.parameters : undefined;
  const layout = parameters?.layout;
  const state = failed ? 'error' : content ? 'ready' : 'loading';
  const globals = current?.globals ?? {};
  const frame = canvasFrame(parameters ?? {}, globals);
  const style: CSSProperties = {
    ...(frame.background ? { background: frame.background } : {}),
    ...(frame.width ? { width: frame.width, height: frame.height ?? undefined, flex: 'none' } : {}),
  };

  const canvas = (
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
      data-viewport={frame.width ? 'sized' : 'responsive'}
      style={style}
    >
      {content}
    </div>
  );
  if (flags.full) return canvas;

  const menus = current
    ? toolbarMenus({
        globalTypes: ((composed?.globalTypes as ModuleRecord | undefined) ?? annotations?.globalTypes ?? {}) as ModuleRecord,
        globals,
        parameters: parameters ?? {},
        themes: storybook?.themes() ?? null,
        storyGlobals,
        major: storybook?.major ?? 9,
      })
    : [];
  const rows = current ? controlRows(argTypes, current.args, globals, parameters ?? {}) : [];
  return (
    <>
      {current && <Toolbar menus={menus} onChange={changeGlobal} />}
      <div className="studio-stage">{canvas}</div>
      {current && <ControlsPanel rows={rows} args={current.args} onChange={changeArg} onReset={resetArgs} />}
    </>
  );
}
