// The rows of the controls panel, from a story's argTypes, the way Storybook's
// controls addon reads them: `control` (a type name or `{ type, min, max,
// step, labels, presetColors }`, `false` to hide), `options` (+ `mapping`,
// applied when the story renders), `table.disable`, conditional args (`if`),
// and `parameters.controls` (`disable`, `include`, `exclude`, `matchers`).
// Stories composed by Storybook come with argTypes Storybook already inferred
// from their args; for the studio's CSF runner `inferArgTypes` infers them the
// same way (Storybook's inferArgTypes + inferControls).
import type { Args } from './catalog';

type Values = Record<string, unknown>;

export type ControlType =
  | 'text'
  | 'boolean'
  | 'number'
  | 'range'
  | 'select'
  | 'multi-select'
  | 'radio'
  | 'inline-radio'
  | 'check'
  | 'inline-check'
  | 'color'
  | 'object'
  | 'date';

const CONTROL_TYPES: ReadonlySet<string> = new Set<ControlType>([
  'text',
  'boolean',
  'number',
  'range',
  'select',
  'multi-select',
  'radio',
  'inline-radio',
  'check',
  'inline-check',
  'color',
  'object',
  'date',
]);
const OPTION_TYPES: ReadonlySet<string> = new Set(['select', 'multi-select', 'radio', 'inline-radio', 'check', 'inline-check']);

export interface ControlRow {
  name: string;
  type: ControlType;
  description: string | null;
  /** The choices of an options control, as the story's args hold them (before `mapping`). */
  options: unknown[];
  labels: Record<string, string>;
  min?: number;
  max?: number;
  step?: number;
  presetColors: string[];
}

const isObject = (value: unknown): value is Values => typeof value === 'object' && value !== null && !Array.isArray(value);
const numberOr = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

function isEqual(a: unknown, b: unknown): boolean {
  return a === b || (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null && JSON.stringify(a) === JSON.stringify(b));
}

/** Storybook's conditional args (argTypes[name].if): whether an arg is shown and passed, given the others and the globals. */
export function included(argType: unknown, args: Args, globals: Values): boolean {
  const condition = isObject(argType) ? argType.if : undefined;
  if (!isObject(condition)) return true;
  const value = typeof condition.arg === 'string' ? args[condition.arg] : typeof condition.global === 'string' ? globals[condition.global] : undefined;
  if (condition.eq !== undefined) return isEqual(value, condition.eq);
  if (condition.neq !== undefined) return !isEqual(value, condition.neq);
  if (condition.exists !== undefined) return condition.exists ? value !== undefined : value === undefined;
  return condition.truthy === false ? !value : Boolean(value);
}

function typeName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null || value === undefined) return 'object';
  const type = typeof value;
  return type === 'bigint' || type === 'undefined' ? 'object' : type;
}

/** Storybook's inferArgTypes: a `type` for every arg whose argType has none, from the arg's value. */
export function inferArgTypes(argTypes: Values, args: Args): Values {
  const inferred: Values = {};
  for (const [name, value] of Object.entries(args)) {
    const given = isObject(argTypes[name]) ? (argTypes[name] as Values) : {};
    inferred[name] = given.type === undefined ? { name, type: { name: typeName(value) }, ...given } : { name, ...given };
  }
  for (const [name, given] of Object.entries(argTypes)) if (!(name in inferred)) inferred[name] = isObject(given) ? { name, ...given } : given;
  return inferred;
}

function testPattern(pattern: unknown, name: string): boolean {
  if (pattern instanceof RegExp) return pattern.test(name);
  return typeof pattern === 'string' && new RegExp(pattern).test(name);
}

/** Storybook's inferControls for an argType without a control: from its type, the controls' matchers, its options. */
function inferControl(argType: Values, name: string, matchers: Values): ControlType | null {
  const type = isObject(argType.type) ? argType.type.name : argType.type;
  if (Array.isArray(argType.options)) return 'select';
  if (typeof type !== 'string') return null;
  if (type === 'string' && testPattern(matchers.color, name)) return 'color';
  if (testPattern(matchers.date, name)) return 'date';
  switch (type) {
    case 'boolean':
      return 'boolean';
    case 'string':
      return 'text';
    case 'number':
      return 'number';
    case 'enum': {
      const values = isObject(argType.type) && Array.isArray(argType.type.value) ? argType.type.value : [];
      return values.length <= 5 ? 'radio' : 'select';
    }
    case 'function':
    case 'symbol':
    case 'other':
      return null;
    default:
      return 'object';
  }
}

function matchesFilter(name: string, filter: unknown): boolean {
  if (Array.isArray(filter)) return filter.includes(name);
  return testPattern(filter, name);
}

/**
 * The panel's rows for a story: one per argType that has (or gets) a control
 * and is not hidden, in argTypes order.
 */
export function controlRows(argTypes: Values, args: Args, globals: Values, parameters: Values): ControlRow[] {
  const controls = isObject(parameters.controls) ? parameters.controls : {};
  if (controls.disable === true) return [];
  const matchers = isObject(controls.matchers) ? controls.matchers : {};
  const rows: ControlRow[] = [];
  for (const [name, value] of Object.entries(argTypes)) {
    if (!isObject(value)) continue;
    const argType = value;
    if (argType.control === false || (isObject(argType.control) && argType.control.disable === true)) continue;
    if (isObject(argType.table) && argType.table.disable === true) continue;
    if (controls.include !== undefined && controls.include !== null && !matchesFilter(name, controls.include)) continue;
    if (controls.exclude !== undefined && controls.exclude !== null && matchesFilter(name, controls.exclude)) continue;
    if (!included(argType, args, globals)) continue;

    const control = isObject(argType.control) ? argType.control : { type: argType.control };
    const options = Array.isArray(argType.options) ? argType.options : Array.isArray(control.options) ? control.options : [];
    const declared = typeof control.type === 'string' && CONTROL_TYPES.has(control.type) ? (control.type as ControlType) : null;
    let type = declared ?? inferControl({ ...argType, options: options.length > 0 ? options : undefined }, name, matchers);
    // options without an options control (Storybook infers `text` from a string arg): a select, as its panel shows
    if (type && options.length > 0 && !OPTION_TYPES.has(type)) type = 'select';
    if (!type) continue;
    rows.push({
      name,
      type,
      description: typeof argType.description === 'string' ? argType.description : null,
      options,
      labels: isObject(control.labels) ? (Object.fromEntries(Object.entries(control.labels).map(([k, v]) => [k, String(v)])) as Record<string, string>) : {},
      min: numberOr(control.min),
      max: numberOr(control.max),
      step: numberOr(control.step),
      presetColors: Array.isArray(control.presetColors) ? control.presetColors.filter((c): c is string => typeof c === 'string') : [],
    });
  }
  return rows;
}
