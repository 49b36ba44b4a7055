// Args and globals in the page's query string, in Storybook's own format, so
// that a studio link and a Storybook link carry the same values:
// `args=label:Hello+there;disabled:!true;size:12;tags[0]:a;style.color:!hex(ff0000)`.
// Values: `!true`/`!false`/`!null`/`!undefined`, numbers, `!date(ISO)`,
// `!hex(rrggbb)`, `!rgba(...)`/`!hsla(...)`; objects by dots, arrays by
// brackets. As in Storybook, only "safe" strings travel in the URL (letters,
// digits, space, `_`, `-`, numbers and colours): an arg that is not is left out.

type Values = Record<string, unknown>;

const VALIDATION_REGEXP = /^[a-zA-Z0-9 _-]*$/;
const NUMBER_REGEXP = /^-?[0-9]+(\.[0-9]+)?$/;
const HEX_REGEXP = /^#([a-f0-9]{3,4}|[a-f0-9]{6}|[a-f0-9]{8})$/i;
const COLOR_REGEXP = /^(rgba?|hsla?)\(([0-9]{1,3}),\s?([0-9]{1,3})%?,\s?([0-9]{1,3})%?,?\s?([0-9](\.[0-9]{1,2})?)?\)$/i;

const isPlainObject = (value: unknown): value is Values =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;

/** Whether Storybook would put `key: value` in a URL. */
export function isUrlSafe(key: string, value: unknown): boolean {
  if (!key || !VALIDATION_REGEXP.test(key)) return false;
  if (value === null || value === undefined || value instanceof Date || typeof value === 'number' || typeof value === 'boolean') return true;
  if (typeof value === 'string') return VALIDATION_REGEXP.test(value) || NUMBER_REGEXP.test(value) || HEX_REGEXP.test(value) || COLOR_REGEXP.test(value);
  if (Array.isArray(value)) return value.every((item) => isUrlSafe(key, item));
  if (isPlainObject(value)) return Object.entries(value).every(([k, v]) => isUrlSafe(k, v));
  return false;
}

function decodeValue(text: string): unknown {
  if (text.startsWith('!')) {
    if (text === '!undefined') return undefined;
    if (text === '!null') return null;
    if (text === '!true') return true;
    if (text === '!false') return false;
    if (text.startsWith('!date(') && text.endsWith(')')) return new Date(text.replaceAll(' ', '+').slice(6, -1));
    if (text.startsWith('!hex(') && text.endsWith(')')) return `#${text.slice(5, -1)}`;
    const colour = text.slice(1).match(COLOR_REGEXP);
    if (colour) {
      const [, fn, a, b, c, alpha] = colour;
      const pct = fn.toLowerCase().startsWith('hsl') ? '%' : '';
      return alpha === undefined ? `${fn}(${a}, ${b}${pct}, ${c}${pct})` : `${fn}(${a}, ${b}${pct}, ${c}${pct}, ${alpha})`;
    }
  }
  return NUMBER_REGEXP.test(text) ? Number(text) : text;
}

function encodeValue(value: unknown): string {
  if (value === undefined) return '!undefined';
  if (value === null) return '!null';
  if (value === true) return '!true';
  if (value === false) return '!false';
  if (value instanceof Date) return `!date(${value.toISOString()})`;
  if (typeof value === 'string') {
    if (HEX_REGEXP.test(value)) return `!hex(${value.slice(1)})`;
    if (COLOR_REGEXP.test(value)) return `!${value.replace(/[\s%]/g, '')}`;
    return value.replace(/ /g, '+');
  }
  return String(value);
}

/** `a.b[0].c` -> ['a', 'b', 0, 'c'] */
function splitPath(path: string): (string | number)[] {
  const parts: (string | number)[] = [];
  for (const match of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) parts.push(match[2] !== undefined ? Number(match[2]) : match[1]);
  return parts;
}

function assign(target: Values, path: (string | number)[], value: unknown): void {
  let node: Values | unknown[] = target;
  path.forEach((part, index) => {
    const last = index === path.length - 1;
    const record = node as Record<string | number, unknown>;
    if (last) {
      record[part] = value;
      return;
    }
    if (typeof record[part] !== 'object' || record[part] === null) record[part] = typeof path[index + 1] === 'number' ? [] : {};
    node = record[part] as Values;
  });
}

/** Parses `name:value;other:!true` (Storybook's `args=` and `globals=`); unsafe entries are left out. */
export function parseValues(param: string | null): Values {
  const parsed: Values = {};
  for (const pair of (param ?? '').split(';')) {
    const at = pair.indexOf(':');
    if (at <= 0) continue;
    const path = splitPath(pair.slice(0, at));
    if (path.length === 0 || typeof path[0] !== 'string') continue;
    assign(parsed, path, decodeValue(pair.slice(at + 1).replace(/\+/g, ' ')));
  }
  return Object.fromEntries(Object.entries(parsed).filter(([key, value]) => isUrlSafe(key, value)));
}

function flatten(prefix: string, value: unknown, into: string[]): void {
  if (Array.isArray(value)) value.forEach((item, index) => flatten(`${prefix}[${index}]`, item, into));
  else if (isPlainObject(value)) for (const [key, item] of Object.entries(value)) flatten(`${prefix}.${key}`, item, into);
  else into.push(`${prefix}:${encodeValue(value)}`);
}

/** Formats values for the URL; entries Storybook would not put in a URL are left out. */
export function formatValues(values: Values): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(values)) if (isUrlSafe(key, value)) flatten(key, value, parts);
  return parts.join(';');
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The args that differ from `initial` (what Storybook's URL carries); a removed arg is `undefined`. */
export function changedArgs(initial: Values, current: Values): Values {
  const changed: Values = {};
  for (const [key, value] of Object.entries(current)) if (!same(initial[key], value)) changed[key] = value;
  for (const key of Object.keys(initial)) if (!(key in current)) changed[key] = undefined;
  return changed;
}
