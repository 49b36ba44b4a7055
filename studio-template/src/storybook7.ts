// Storybook 7's portable stories. Its composeStory returns a story function
// with no load(): the context Storybook prepares for a render (loaders,
// hooks, argTypes, playFunction, the decorated story function) is handed only
// to the decorators, and it carries the globals' defaults from `globalTypes`
// alone. So the studio sets, after the project's annotations, one decorator of
// its own: the outermost, it keeps the context of a probe call and renders
// nothing then, and passes through on every real render. The studio then sets
// the project's `globals` (Storybook 7's initial globals) on that context and
// runs its loaders, as Storybook 7's preview does before a render.

type ModuleRecord = Record<string, unknown>;
type StoryFn = (context?: ModuleRecord) => unknown;
type Decorator = (storyFn: StoryFn, context: ModuleRecord) => unknown;

/** The prepared context of a composed story, before the studio sets globals and loaded data. */
export interface Storybook7Context extends ModuleRecord {
  argTypes: Record<string, unknown>;
  initialArgs: ModuleRecord;
  applyLoaders: (context: ModuleRecord) => Promise<ModuleRecord>;
}

const isObject = (value: unknown): value is ModuleRecord => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Storybook's initial globals: each globalType's default, then the project's `globals`. */
export function initialGlobals(project: ModuleRecord): ModuleRecord {
  const defaults: ModuleRecord = {};
  const globalTypes = isObject(project.globalTypes) ? project.globalTypes : {};
  for (const [name, globalType] of Object.entries(globalTypes)) {
    if (isObject(globalType) && globalType.defaultValue !== undefined) defaults[name] = globalType.defaultValue;
  }
  return { ...defaults, ...(isObject(project.globals) ? project.globals : {}) };
}

export interface Storybook7 {
  /** The project's initial globals (its annotations' `globals` over the globalTypes' defaults). */
  globals: ModuleRecord;
  /** Composes a story and returns the context Storybook 7 prepared for it. */
  prepare(story: unknown, meta: ModuleRecord, exportName: string): Storybook7Context;
}

/**
 * Sets `annotations` (the addons', then `.storybook/preview`) as Storybook 7's
 * project annotations, with the studio's probe decorator after them.
 */
export function setStorybook7Project(portable: ModuleRecord, previewApi: ModuleRecord, annotations: ModuleRecord[]): Storybook7 {
  const setProjectAnnotations = portable.setProjectAnnotations as (annotations: ModuleRecord[]) => void;
  const composeStory = portable.composeStory as (story: unknown, meta: ModuleRecord, project: undefined, exportName: string) => (args?: ModuleRecord) => unknown;
  const composeConfigs = previewApi.composeConfigs as ((annotations: ModuleRecord[]) => ModuleRecord) | undefined;
  if (typeof composeConfigs !== 'function') throw new Error("Storybook 7's preview API has no composeConfigs");

  let probe: ((context: ModuleRecord) => void) | null = null;
  // The outermost decorator runs before any other.
  const keepContext: Decorator = (storyFn, context) => {
    if (!probe) return storyFn();
    probe(context);
    return null;
  };
  // Storybook 7 puts the decorators of the first annotations file outermost,
  // unless the `legacyDecoratorFileOrder` feature asks for the order of 6.
  const legacyOrder = (globalThis as { FEATURES?: { legacyDecoratorFileOrder?: boolean } }).FEATURES?.legacyDecoratorFileOrder === true;
  const studio = { decorators: [keepContext] };
  setProjectAnnotations(legacyOrder ? [...annotations, studio] : [studio, ...annotations]);
  const globals = initialGlobals(composeConfigs(annotations));

  function prepare(story: unknown, meta: ModuleRecord, exportName: string): Storybook7Context {
    const composed = composeStory(story, meta, undefined, exportName);
    let seen: ModuleRecord | null = null;
    probe = (context) => {
      seen = context;
    };
    try {
      composed();
    } finally {
      probe = null;
    }
    const context = seen as ModuleRecord | null;
    if (!context || typeof context.applyLoaders !== 'function' || typeof context.unboundStoryFn !== 'function') {
      throw new Error(`Storybook 7 did not hand the studio's decorator the context of ${String(meta.title)} / ${exportName}`);
    }
    return context as Storybook7Context;
  }

  return { globals, prepare };
}
