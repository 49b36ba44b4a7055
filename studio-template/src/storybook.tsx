// Stories composed by the repository's own Storybook, for repositories that
// have it: its portable-stories API (setProjectAnnotations with the addons'
// annotations and .storybook/preview, then composeStory) gives decorators and
// stories what they get in Storybook: preview hooks (useArgs, useGlobals,
// useEffect...), loaders and beforeEach, args mapped through argTypes, globals,
// parameters, custom renders. The studio plays the part of Storybook's preview
// around a composed story: it renders it in the studio's React tree with one
// hooks context for the story's life, tells Storybook's hooks when a render is
// on screen (their effects run then), and re-renders on the channel events
// that the hooks emit. Nothing here imports Storybook: the repository's
// modules come in through `virtual:studio/storybook` (plugin/storybook/).
import { createElement, useEffect, useReducer, useRef, useState, type ComponentType, type ReactNode, type RefObject } from 'react';
import type { Args } from './catalog';
import { included } from './controls';
import { setStorybook7Project } from './storybook7';

type ModuleRecord = Record<string, unknown>;
type Listener = (payload: ModuleRecord) => void;

// Storybook's channel events (core-events), by value: the same strings in Storybook 7 to 10.
const STORY_RENDERED = 'storyRendered';
const UPDATE_STORY_ARGS = 'updateStoryArgs';
const RESET_STORY_ARGS = 'resetStoryArgs';
const UPDATE_GLOBALS = 'updateGlobals';
const FORCE_RE_RENDER = 'forceReRender';
// What @storybook/addon-themes' decorators (withThemeByClassName...) emit when
// they are created: the theme names for the toolbar, under the global `theme`.
// Addon-themes 7 spells its addon id with a stray brace, and so its event.
const REGISTER_THEMES = ['storybook/themes/REGISTER_THEMES', 'storybook/themes}/REGISTER_THEMES'];

interface Channel {
  on(event: string, listener: Listener): void;
  removeListener(event: string, listener: Listener): void;
  emit(event: string, ...payload: unknown[]): void;
  last?(event: string): unknown[] | undefined;
}

/** The themes an addon-themes decorator declared. */
export interface RegisteredThemes {
  themes: string[];
  defaultTheme: string | null;
}

interface ArgType {
  mapping?: ModuleRecord;
  if?: ModuleRecord;
}

/** The story context Storybook prepared for a composed story (the fields the studio uses). */
export interface StoryContext {
  id: string;
  args: Args;
  unmappedArgs?: Args;
  initialArgs: Args;
  argTypes: Record<string, ArgType | undefined>;
  globals: ModuleRecord;
  /** The meta's and story's own globals (Storybook 9+; absent before). */
  storyGlobals?: ModuleRecord;
  parameters: ModuleRecord;
  hooks: { clean(): void };
  unboundStoryFn: (context: StoryContext) => ReactNode;
  playFunction?: (context: StoryContext) => unknown;
  canvasElement: HTMLElement | null;
  canvas?: unknown;
  [field: string]: unknown;
}

interface ComposedStory {
  load?: () => Promise<void>;
}

type ComposeStory = (story: unknown, meta: ModuleRecord, project: ModuleRecord, exportName: string) => ComposedStory;

/** What `virtual:studio/storybook` hands the app (see plugin/storybook/vite.mjs). */
export interface StorybookRuntime {
  version: string | null;
  loadTest: (() => Promise<ModuleRecord>) | null;
  annotations: ModuleRecord[];
  portable: ModuleRecord;
  previewApi: ModuleRecord;
}

/** One story (or a bare component) to compose. */
export interface ComposeInput {
  exportName: string;
  title: string;
  meta: ModuleRecord;
  /** The story export (CSF3 object, CSF2 function); `{}` renders the meta's component with its args. */
  story: unknown;
  /** Globals over the project's initialGlobals (the page's `?globals=`). */
  globals: ModuleRecord;
}

/** The repository's Storybook with its project annotations set, ready to compose stories. */
export interface StorybookProject {
  version: string;
  major: number;
  channel: Channel;
  /** The themes the preview's addon-themes decorator registered, or null. */
  themes(): RegisteredThemes | null;
  compose(input: ComposeInput): Promise<StoryContext>;
  combineArgs(args: Args, update: Args): Args;
  /** What Storybook adds to a play function's context for `canvasElement`: `canvas` queries and `userEvent`. */
  playHelpers(canvasElement: HTMLElement): Promise<ModuleRecord>;
}

const isObject = (value: unknown): value is ModuleRecord => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Storybook's combineArgs when the preview API lacks it: an update of undefined removes the arg. */
function mergeArgs(args: Args, update: Args): Args {
  const next = { ...args, ...update };
  for (const [name, value] of Object.entries(update)) if (value === undefined) delete next[name];
  return next;
}

type Addons = { hasChannel?: () => boolean; setChannel?: (channel: unknown) => void; getChannel?: () => Channel };

/**
 * Gives Storybook's addons one channel before `.storybook/preview` is
 * evaluated. Storybook 10 hands out a fresh mock channel per call until one is
 * set: the hooks' events, the themes addon-themes registers while the preview
 * module runs, and the studio's listeners must meet on one.
 */
export function installChannel(runtime: StorybookRuntime): void {
  const { previewApi } = runtime;
  const addons = previewApi.addons as Addons | undefined;
  if (addons?.hasChannel?.() === false && typeof previewApi.mockChannel === 'function') {
    addons.setChannel?.((previewApi.mockChannel as () => unknown)());
  }
}

function readThemes(payload: unknown): RegisteredThemes | null {
  if (!isObject(payload) || !Array.isArray(payload.themes)) return null;
  const themes = payload.themes.filter((name): name is string => typeof name === 'string');
  return { themes, defaultTheme: typeof payload.defaultTheme === 'string' ? payload.defaultTheme : null };
}

/** The copy of a stories module's meta that composeStory may set a missing title on. */
function metaOf(input: ComposeInput): ModuleRecord {
  return Object.getPrototypeOf(input.meta) === Object.prototype ? { ...input.meta, title: input.meta.title ?? input.title } : input.meta;
}

/** Composition by Storybook 8+: composeStory, then load() runs the loaders and beforeEach. */
async function composerWithLoad(runtime: StorybookRuntime, annotations: ModuleRecord[]): Promise<(input: ComposeInput) => Promise<StoryContext>> {
  const version = runtime.version ?? 'unknown';
  const setProjectAnnotations = runtime.portable.setProjectAnnotations as (annotations: ModuleRecord[]) => ModuleRecord | undefined;
  const composeStory = runtime.portable.composeStory as ComposeStory;
  const project = setProjectAnnotations(annotations);
  if (typeof project?.beforeAll === 'function') await (project.beforeAll as () => unknown)();

  return async (input) => {
    // The context Storybook prepares for a render is handed to the loaders:
    // the studio's own loader (after the project's) keeps it.
    const seen: { context: StoryContext | null } = { context: null };
    const keep = (context: StoryContext): ModuleRecord => {
      seen.context = context;
      return {};
    };
    const composed = composeStory(input.story, metaOf(input), { loaders: [keep], initialGlobals: input.globals }, input.exportName);
    await composed.load?.();
    if (!seen.context) throw new Error(`Storybook ${version} did not run the loaders of ${input.title} / ${input.exportName}`);
    return seen.context;
  };
}

/**
 * Composition by Storybook 7 (storybook7.ts): the context its composeStory
 * prepared, with the project's and the page's globals, args prepared again
 * for them, and the loaders' data, as Storybook 7's preview renders a story.
 */
function composerOf7(runtime: StorybookRuntime, annotations: ModuleRecord[]): (input: ComposeInput) => Promise<StoryContext> {
  const storybook7 = setStorybook7Project(runtime.portable, runtime.previewApi, annotations);
  return async (input) => {
    const prepared = storybook7.prepare(input.story, metaOf(input), input.exportName);
    const globals = { ...storybook7.globals, ...input.globals };
    const unmappedArgs = (isObject(prepared.unmappedArgs) ? prepared.unmappedArgs : prepared.initialArgs) as Args;
    const argTypes = prepared.argTypes as StoryContext['argTypes'];
    const context = { ...prepared, globals, unmappedArgs, args: prepareArgs(unmappedArgs, argTypes, globals), canvasElement: null };
    return (await prepared.applyLoaders(context)) as StoryContext;
  };
}

/**
 * Sets the project annotations of the repository's Storybook (the addons'
 * annotations, then `.storybook/preview`) and runs its `beforeAll`, as
 * Storybook's preview does once before the first story. Null when the
 * installed Storybook has no portable stories to compose with (the CSF runner
 * renders its stories then).
 */
export async function createStorybookProject(runtime: StorybookRuntime, preview: ModuleRecord | null): Promise<StorybookProject | null> {
  const { portable, previewApi } = runtime;
  const version = runtime.version ?? 'unknown';
  const setProjectAnnotations = portable.setProjectAnnotations;
  const composeStory = portable.composeStory;
  const addons = previewApi.addons as Addons | undefined;
  if (typeof setProjectAnnotations !== 'function' || typeof composeStory !== 'function' || typeof addons?.getChannel !== 'function') {
    console.warn(`component studio: Storybook ${version} has no portable stories: its stories render with the studio's CSF runner`);
    return null;
  }
  installChannel(runtime);
  const channel = addons.getChannel();
  let themes: RegisteredThemes | null = null;
  for (const event of REGISTER_THEMES) {
    themes = readThemes(channel.last?.(event)?.[0]) ?? themes;
    channel.on(event, (payload) => {
      themes = readThemes(payload) ?? themes;
    });
  }
  const annotations = [...runtime.annotations, preview ?? {}];
  // Storybook 8+'s composed stories load() (loaders, beforeEach); Storybook 7's have no load()
  const hasLoad = typeof (composeStory as ComposeStory)({}, { title: 'probe' }, {}, 'probe').load === 'function';
  const compose = hasLoad ? await composerWithLoad(runtime, annotations) : composerOf7(runtime, annotations);
  const combineArgs = typeof previewApi.combineArgs === 'function' ? (previewApi.combineArgs as (a: Args, b: Args) => Args) : mergeArgs;

  async function playHelpers(canvasElement: HTMLElement): Promise<ModuleRecord> {
    const test = runtime.loadTest ? await runtime.loadTest() : {};
    const within = test.within as ((element: HTMLElement) => unknown) | undefined;
    const userEvent = test.userEvent as { setup?: () => unknown } | undefined;
    return {
      ...(typeof within === 'function' ? { canvas: within(canvasElement) } : {}),
      ...(typeof userEvent?.setup === 'function' ? { userEvent: userEvent.setup() } : {}),
    };
  }

  const major = Number.parseInt(version, 10) || 0;
  return { version, major, channel, themes: () => themes, compose, combineArgs, playHelpers };
}

// -- rendering -------------------------------------------------------------------------------

/**
 * Args as a story receives them after an update, as Storybook prepares them:
 * values with an argTypes `mapping` replaced by what they map to, conditional
 * args left out. (The first render's args come prepared by Storybook itself.)
 */
export function prepareArgs(args: Args, argTypes: StoryContext['argTypes'], globals: ModuleRecord): Args {
  const mapped: Args = {};
  for (const [name, value] of Object.entries(args)) {
    const mapping = argTypes[name]?.mapping;
    const map = (v: unknown): unknown =>
      isObject(mapping) && (typeof v === 'string' || typeof v === 'number') && Object.hasOwn(mapping, String(v)) ? mapping[String(v)] : v;
    mapped[name] = Array.isArray(value) ? value.map(map) : map(value);
  }
  return Object.fromEntries(Object.entries(mapped).filter(([name]) => included(argTypes[name], mapped, globals)));
}

function resetArgs(current: Args, initial: Args, argNames: unknown): Args {
  if (!Array.isArray(argNames)) return { ...initial };
  const next = { ...current };
  for (const name of argNames) {
    if (typeof name !== 'string') continue;
    if (name in initial) next[name] = initial[name];
    else delete next[name];
  }
  return next;
}

export type PlayState = 'running' | 'passed' | 'failed';

/** What a story on the canvas currently renders with: for the controls panel and the toolbar. */
export interface LiveState {
  /** Args as the controls show them (before argTypes `mapping`). */
  args: Args;
  globals: ModuleRecord;
}

/**
 * A composed story on the canvas, re-rendered (not remounted) when its args or
 * the globals change through Storybook's hooks. `play` runs the story's play
 * function once after the first render.
 */
export function ComposedStory({
  project,
  context,
  canvas,
  play,
  onPlay,
  urlArgs,
  onState,
}: {
  project: StorybookProject;
  context: StoryContext;
  canvas: RefObject<HTMLElement | null>;
  play: boolean;
  onPlay: (state: PlayState, error?: unknown) => void;
  /** Args of the page's URL (`?args=`), over the story's own. */
  urlArgs: Args;
  /** Told the args and globals after every change (edits, `useArgs`, the toolbar). */
  onState: (state: LiveState) => void;
}): ReactNode {
  const [args, setArgs] = useState<Args>(() => {
    const own = context.unmappedArgs ?? context.args;
    return Object.keys(urlArgs).length > 0 ? project.combineArgs(own, urlArgs) : own;
  });
  const [globals, setGlobals] = useState<ModuleRecord>(context.globals);
  const [, rerender] = useReducer((n: number) => n + 1, 0);

  useEffect(() => {
    const { channel } = project;
    const storyGlobals = isObject(context.storyGlobals) ? context.storyGlobals : {};
    const listeners: [string, Listener][] = [
      [UPDATE_STORY_ARGS, ({ storyId, updatedArgs }) => storyId === context.id && isObject(updatedArgs) && setArgs((current) => project.combineArgs(current, updatedArgs))],
      [RESET_STORY_ARGS, ({ storyId, argNames }) => storyId === context.id && setArgs((current) => resetArgs(current, context.initialArgs, argNames))],
      // as in Storybook, the story's own globals stay over any update (toolbar, useGlobals)
      [UPDATE_GLOBALS, ({ globals: update }) => isObject(update) && setGlobals((current) => ({ ...current, ...update, ...storyGlobals }))],
      [FORCE_RE_RENDER, () => rerender()],
    ];
    for (const [event, listener] of listeners) channel.on(event, listener);
    return () => {
      for (const [event, listener] of listeners) channel.removeListener(event, listener);
      // runs the cleanups of the hooks' effects, as Storybook does when a story goes away
      context.hooks.clean();
    };
  }, [project, context]);

  useEffect(() => {
    onState({ args, globals });
  }, [args, globals, onState]);

  // Storybook runs the effects of its hooks (useEffect of a decorator) once the
  // preview reports the story rendered: after every commit here.
  useEffect(() => {
    project.channel.emit(STORY_RENDERED, context.id);
  });

  // The first render's args are Storybook's own; later ones are prepared here.
  const prepared = args === (context.unmappedArgs ?? context.args) && globals === context.globals ? context.args : prepareArgs(args, context.argTypes, globals);
  const current: StoryContext = { ...context, args: prepared, unmappedArgs: args, globals, canvasElement: canvas.current };
  const latest = useRef(current);
  latest.current = current;

  useEffect(() => {
    const playFunction = context.playFunction;
    if (!play || typeof playFunction !== 'function') return;
    let active = true;
    onPlay('running');
    const target = canvas.current ?? document.body;
    project
      .playHelpers(target)
      .then((helpers) => {
        // The story is on screen already: a play function that asks to mount it gets the canvas.
        const playContext: StoryContext = { ...latest.current, canvasElement: target, ...helpers, mount: async () => helpers.canvas ?? target };
        return playFunction(playContext);
      })
      .then(
        () => active && onPlay('passed'),
        (error: unknown) => active && onPlay('failed', error),
      );
    return () => {
      active = false;
    };
  }, [project, context, play, canvas, onPlay]);

  return createElement(context.unboundStoryFn as ComponentType<StoryContext>, current);
}

/** A composition in progress or done; `key` tells one composition from the next (a new hooks context). */
export type Composition = { status: 'pending' } | { status: 'ready'; context: StoryContext; key: number } | { status: 'error'; error: unknown };

let compositions = 0;

/** Composes `input` with `project` (loaders and beforeEach run), again whenever either changes. */
export function useComposition(project: StorybookProject | null, input: ComposeInput | null): Composition {
  const [done, setDone] = useState<{ project: StorybookProject; input: ComposeInput; composition: Composition } | null>(null);
  useEffect(() => {
    if (!project || !input) return;
    let current = true;
    project.compose(input).then(
      (context) => current && setDone({ project, input, composition: { status: 'ready', context, key: ++compositions } }),
      (error: unknown) => current && setDone({ project, input, composition: { status: 'error', error } }),
    );
    return () => {
      current = false;
    };
  }, [project, input]);
  // what was composed for an earlier story or project is not this one's
  return done && done.project === project && done.input === input ? done.composition : { status: 'pending' };
}
