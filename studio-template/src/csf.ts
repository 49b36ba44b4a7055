// Storybook Component Story Format (CSF3, and CSF2 story functions) turned into
// something React can render: args merged over meta.args, render functions
// honoured, decorators applied story -> component -> preview, innermost first,
// the way Storybook composes them.
import { createElement, type ComponentType, type ElementType, type ReactNode } from 'react';
import type { Args } from './catalog';

export interface StoryContext {
  id: string;
  name: string;
  title: string;
  kind: string;
  story: string;
  args: Args;
  argTypes: Record<string, unknown>;
  globals: Record<string, unknown>;
  /** The globals the meta and story set themselves (Storybook 9+): they win over the toolbar's. */
  storyGlobals: Record<string, unknown>;
  parameters: Record<string, unknown>;
  component: unknown;
  viewMode: 'story';
  loaded: Record<string, unknown>;
}

/** What a decorator receives as its first argument: render `<Story />` or call `Story()`. */
export type StoryFn = (update?: unknown) => ReactNode;
export type Decorator = (Story: StoryFn, context: StoryContext) => ReactNode;
type RenderFn = (args: Args, context: StoryContext) => ReactNode;

/** The annotations shared by a project (preview), a component (meta) and a story. */
export interface Annotations {
  args?: Args;
  argTypes?: Record<string, unknown>;
  parameters?: Record<string, unknown>;
  decorators?: Decorator[];
  render?: RenderFn;
  /** Meta and story: globals of their own (Storybook 9+). */
  globals?: Record<string, unknown>;
  /** Project only: the globals' toolbar declarations and starting values. */
  globalTypes?: Record<string, unknown>;
  initialGlobals?: Record<string, unknown>;
}

export interface Meta extends Annotations {
  title?: string;
  component?: unknown;
}

export interface StoryAnnotations extends Annotations {
  name?: string;
  storyName?: string;
}

type ModuleRecord = Record<string, unknown>;

const isObject = (value: unknown): value is ModuleRecord =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** True for a value React can render as an element type (function, class, memo, forwardRef, lazy...). */
export function isElementType(value: unknown): value is ElementType {
  return typeof value === 'function' || (isObject(value) && '$$typeof' in value);
}

function decoratorsOf(value: unknown): Decorator[] {
  if (typeof value === 'function') return [value as Decorator];
  return Array.isArray(value) ? value.filter((d): d is Decorator => typeof d === 'function') : [];
}

function annotationsOf(value: unknown): Annotations {
  if (!isObject(value) && typeof value !== 'function') return {};
  const source = value as ModuleRecord;
  return {
    args: isObject(source.args) ? source.args : undefined,
    argTypes: isObject(source.argTypes) ? source.argTypes : undefined,
    parameters: isObject(source.parameters) ? source.parameters : undefined,
    decorators: decoratorsOf(source.decorators),
    render: typeof source.render === 'function' ? (source.render as RenderFn) : undefined,
    globals: isObject(source.globals) ? source.globals : undefined,
  };
}

/** The meta (default export) of a CSF module. */
export function readMeta(mod: ModuleRecord): Meta {
  const meta = isObject(mod.default) ? mod.default : {};
  return {
    ...annotationsOf(meta),
    title: typeof meta.title === 'string' ? meta.title : undefined,
    component: meta.component,
  };
}

/**
 * One story export of a CSF module. A CSF2 story is a function (its render)
 * carrying `args`, `decorators` and `storyName` as properties.
 */
export function readStory(mod: ModuleRecord, exportName: string): StoryAnnotations | undefined {
  const value = mod[exportName];
  if (typeof value === 'function') {
    const fn = value as RenderFn & ModuleRecord;
    return { ...annotationsOf(fn), render: fn, storyName: typeof fn.storyName === 'string' ? fn.storyName : undefined };
  }
  if (!isObject(value)) return undefined;
  return { ...annotationsOf(value), name: typeof value.name === 'string' ? value.name : undefined };
}

function globalsOf(source: unknown, field: string): ModuleRecord {
  const value = isObject(source) ? source[field] : undefined;
  return isObject(value) ? value : {};
}

/**
 * The globals a project starts with: each globalType's `defaultValue` (Storybook 7),
 * then `initialGlobals`, then `over` (the page's URL).
 */
export function startingGlobals(project: Annotations, over: ModuleRecord): ModuleRecord {
  const defaults: ModuleRecord = {};
  for (const [name, globalType] of Object.entries(project.globalTypes ?? {})) {
    if (isObject(globalType) && globalType.defaultValue !== undefined) defaults[name] = globalType.defaultValue;
  }
  return { ...defaults, ...project.initialGlobals, ...over };
}

/** The project annotations of `.storybook/preview.*`: a CSF3 default export or named exports. */
export function readPreview(mod: ModuleRecord | null): Annotations {
  if (!mod) return {};
  const fromDefault = annotationsOf(mod.default);
  const fromNamed = annotationsOf(mod);
  return {
    parameters: { ...fromNamed.parameters, ...fromDefault.parameters },
    decorators: [...(fromDefault.decorators ?? []), ...(fromNamed.decorators ?? [])],
    args: { ...fromNamed.args, ...fromDefault.args },
    argTypes: { ...fromNamed.argTypes, ...fromDefault.argTypes },
    globalTypes: { ...globalsOf(mod, 'globalTypes'), ...globalsOf(mod.default, 'globalTypes') },
    // `globals` is the name before Storybook 8
    initialGlobals: { ...globalsOf(mod, 'globals'), ...globalsOf(mod, 'initialGlobals'), ...globalsOf(mod.default, 'globals'), ...globalsOf(mod.default, 'initialGlobals') },
  };
}

// The innermost story: a component of its own, so that hooks in a render
// function belong to it and not to whichever decorator calls Story().
function StoryBody({ render, context }: { render: RenderFn; context: StoryContext }): ReactNode {
  return render(context.args, context);
}

/** A render function ready to run: the decorated story and the context it starts from. */
export interface Prepared {
  run: (context: StoryContext) => ReactNode;
  context: StoryContext;
}

export interface PrepareOptions {
  id: string;
  name: string;
  title: string;
  component: unknown;
  project: Annotations;
  meta?: Meta;
  story?: StoryAnnotations;
}

/**
 * Composes a story (or a bare component, without meta and story) with its
 * args and decorators. As in Storybook, each decorator gets a `Story` function
 * of stable identity that renders the next layer with the current context, so
 * `<Story />` does not remount on every render.
 */
export function prepare(options: PrepareOptions): Prepared {
  const { project, meta = {}, story = {}, component } = options;
  const render: RenderFn =
    story.render ??
    meta.render ??
    ((args) => {
      if (!isElementType(component)) {
        throw new Error(`${options.title}: nothing to render (no component export and no render function)`);
      }
      return createElement(component as ComponentType<Args>, args);
    });
  const inner = (context: StoryContext): ReactNode => createElement(StoryBody, { render, context });
  const decorators = [...(story.decorators ?? []), ...(meta.decorators ?? []), ...(project.decorators ?? [])];

  const store: { current: StoryContext | null } = { current: null };
  const bind =
    (next: (context: StoryContext) => ReactNode): StoryFn =>
    (update) => {
      // `<Story />` passes React props ({}); `Story({ args })` passes a context update
      const base = store.current as StoryContext;
      const merged = isObject(update) ? { ...base, ...update, args: { ...base.args, ...(isObject(update.args) ? update.args : {}) } } : base;
      store.current = merged;
      return next(merged);
    };
  const decorated = decorators.reduce<(context: StoryContext) => ReactNode>((next, decorator) => {
    const Story = bind(next);
    return (context) => decorator(Story, context);
  }, inner);

  const context: StoryContext = {
    id: options.id,
    name: options.name,
    title: options.title,
    kind: options.title,
    story: options.name,
    args: { ...project.args, ...meta.args, ...story.args },
    argTypes: { ...project.argTypes, ...meta.argTypes, ...story.argTypes },
    globals: {},
    storyGlobals: { ...meta.globals, ...story.globals },
    parameters: { ...project.parameters, ...meta.parameters, ...story.parameters },
    component,
    viewMode: 'story',
    loaded: {},
  };
  return {
    context,
    run: (start) => {
      store.current = start;
      return decorated(start);
    },
  };
}
