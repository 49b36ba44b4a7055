// The toolbar's menus, each setting one global the way Storybook's toolbar
// does: the project's `globalTypes` with `toolbar.items`, the themes an
// addon-themes decorator registered (global `theme`), backgrounds
// (`parameters.backgrounds`: Storybook 8's `values` + `default`, 9/10's
// `options` + `globals.backgrounds`), and viewports (a few sizes of the
// studio's own, plus `parameters.viewport`'s). The studio paints the
// background and sizes the canvas itself (`canvasFrame`).
import type { RegisteredThemes } from './storybook';

type Values = Record<string, unknown>;

export interface ToolbarOption {
  label: string;
  value: unknown;
}

export interface ToolbarMenu {
  /** The global it sets. */
  global: string;
  title: string;
  options: ToolbarOption[];
  /** Index of the option in use, -1 for none. */
  selected: number;
  /** Set by the story's own `globals` (Storybook 9+): shown, not changeable, as in Storybook's toolbar. */
  locked: boolean;
}

const isObject = (value: unknown): value is Values => typeof value === 'object' && value !== null && !Array.isArray(value);
const same = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

interface Size {
  name: string;
  width: string;
  height: string;
}

// The studio's viewports, named as Storybook's (INITIAL_VIEWPORTS has these keys).
const VIEWPORTS: Record<string, Size> = {
  mobile1: { name: 'Mobile', width: '375px', height: '667px' },
  tablet: { name: 'Tablet', width: '768px', height: '1024px' },
  desktop: { name: 'Desktop', width: '1280px', height: '800px' },
};

function globalTypeMenus(globalTypes: Values, globals: Values): ToolbarMenu[] {
  const menus: ToolbarMenu[] = [];
  for (const [name, globalType] of Object.entries(globalTypes)) {
    if (!isObject(globalType) || !isObject(globalType.toolbar) || !Array.isArray(globalType.toolbar.items)) continue;
    const { toolbar } = globalType;
    const options: ToolbarOption[] = [];
    for (const item of toolbar.items as unknown[]) {
      if (isObject(item)) {
        if (item.type === 'reset') continue;
        options.push({ label: String(item.title ?? item.value), value: item.value });
      } else if (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean') {
        options.push({ label: String(item), value: item });
      }
    }
    const value = name in globals ? globals[name] : globalType.defaultValue;
    const title = typeof toolbar.title === 'string' ? toolbar.title : typeof globalType.description === 'string' ? globalType.description : typeof globalType.name === 'string' ? globalType.name : name;
    menus.push({ global: name, title, options, selected: options.findIndex((o) => same(o.value, value)), locked: false });
  }
  return menus;
}

function themeMenu(themes: RegisteredThemes, globals: Values): ToolbarMenu {
  const current = typeof globals.theme === 'string' && globals.theme ? globals.theme : themes.defaultTheme;
  return {
    global: 'theme',
    title: 'Theme',
    options: themes.themes.map((name) => ({ label: name, value: name })),
    selected: themes.themes.indexOf(current ?? ''),
    locked: false,
  };
}

interface Background {
  name: string;
  colour: string;
  /** What the global holds for it: the key (Storybook 9+) or the colour (8). */
  value: string;
}

/** The backgrounds of `parameters.backgrounds`, in either Storybook's shape; empty when disabled. */
export function backgroundsOf(parameters: Values): Background[] {
  const backgrounds = isObject(parameters.backgrounds) ? parameters.backgrounds : null;
  if (!backgrounds || backgrounds.disable === true || backgrounds.disabled === true) return [];
  if (isObject(backgrounds.options)) {
    return Object.entries(backgrounds.options).flatMap(([key, option]) =>
      isObject(option) && typeof option.value === 'string' ? [{ name: typeof option.name === 'string' ? option.name : key, colour: option.value, value: key }] : [],
    );
  }
  if (Array.isArray(backgrounds.values)) {
    return backgrounds.values.flatMap((option: unknown) =>
      isObject(option) && typeof option.value === 'string' ? [{ name: String(option.name ?? option.value), colour: option.value, value: option.value }] : [],
    );
  }
  return [];
}

/** The chosen background's value: `globals.backgrounds.value`, else Storybook 8's `parameters.backgrounds.default`. */
function backgroundValue(parameters: Values, globals: Values, options: Background[]): string | null {
  const global = globals.backgrounds;
  if (isObject(global) && typeof global.value === 'string' && global.value) return global.value;
  const fallback = isObject(parameters.backgrounds) ? parameters.backgrounds.default : undefined;
  return typeof fallback === 'string' ? (options.find((o) => o.name === fallback || o.value === fallback)?.value ?? null) : null;
}

/** The viewports: the story's (`parameters.viewport.options`, 8's `viewports`) or the studio's. */
function viewportsOf(parameters: Values): Record<string, Size> {
  const viewport = isObject(parameters.viewport) ? parameters.viewport : {};
  const declared = isObject(viewport.options) ? viewport.options : isObject(viewport.viewports) ? viewport.viewports : null;
  if (!declared) return VIEWPORTS;
  const sizes: Record<string, Size> = {};
  for (const [key, entry] of Object.entries(declared)) {
    if (!isObject(entry)) continue;
    const styles = isObject(entry.styles) ? entry.styles : null;
    if (styles && typeof styles.width === 'string' && typeof styles.height === 'string') {
      sizes[key] = { name: typeof entry.name === 'string' ? entry.name : key, width: styles.width, height: styles.height };
    }
  }
  return sizes;
}

/** `globals.viewport`: `{ value }` in Storybook 9+, the key itself in 8. */
function viewportKey(globals: Values): string | null {
  const global = globals.viewport;
  if (typeof global === 'string') return global || null;
  return isObject(global) && typeof global.value === 'string' && global.value ? global.value : null;
}

export function toolbarMenus(options: {
  globalTypes: Values;
  globals: Values;
  parameters: Values;
  themes: RegisteredThemes | null;
  /** The story's own globals, which lock their menus. */
  storyGlobals: Values;
  /** Storybook's major version, for the shape of the backgrounds and viewport globals (9 for the CSF runner). */
  major: number;
}): ToolbarMenu[] {
  const { globalTypes, globals, parameters, themes, storyGlobals, major } = options;
  const menus = globalTypeMenus(globalTypes, globals);
  if (themes && themes.themes.length > 0 && !menus.some((m) => m.global === 'theme')) menus.push(themeMenu(themes, globals));

  const backgrounds = backgroundsOf(parameters);
  if (backgrounds.length > 0) {
    const current = backgroundValue(parameters, globals, backgrounds);
    const choices = [{ label: 'No background', value: { value: undefined } }, ...backgrounds.map((b) => ({ label: b.name, value: { value: b.value } }))];
    menus.push({ global: 'backgrounds', title: 'Background', options: choices, selected: current === null ? 0 : backgrounds.findIndex((b) => b.value === current) + 1, locked: false });
  }

  const sizes = viewportsOf(parameters);
  const key = viewportKey(globals);
  const wrap = (value: string | undefined): unknown => (major >= 9 ? { value, isRotated: false } : (value ?? ''));
  const viewportOptions = [{ label: 'Responsive', value: wrap(undefined) }, ...Object.entries(sizes).map(([k, size]) => ({ label: size.name, value: wrap(k) }))];
  const index = key ? Object.keys(sizes).indexOf(key) + 1 : 0;
  menus.push({ global: 'viewport', title: 'Viewport', options: viewportOptions, selected: index, locked: false });
  return menus.map((menu) => (Object.hasOwn(storyGlobals, menu.global) ? { ...menu, locked: true } : menu));
}

/** How the canvas shows the story under these globals: its background colour and the viewport's size. */
export function canvasFrame(parameters: Values, globals: Values): { background: string | null; width: string | null; height: string | null } {
  const backgrounds = backgroundsOf(parameters);
  const current = backgroundValue(parameters, globals, backgrounds);
  const background = current === null ? null : (backgrounds.find((b) => b.value === current)?.colour ?? null);
  const key = viewportKey(globals);
  const size = key ? viewportsOf(parameters)[key] : undefined;
  const rotated = isObject(globals.viewport) && globals.viewport.isRotated === true;
  return { background, width: size ? (rotated ? size.height : size.width) : null, height: size ? (rotated ? size.width : size.height) : null };
}
