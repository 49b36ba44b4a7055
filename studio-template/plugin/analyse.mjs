// Static reading of component and Storybook CSF modules, without executing
// them: the server lists what a repository holds (exports, stories and their
// literal args) while the browser imports the real modules to render them.
import path from 'node:path';
import { parseSync } from 'vite';

const PASCAL_CASE = /^[A-Z][A-Za-z0-9_]*$/;

/** True for names that can be a React component (PascalCase). */
export function isComponentName(name) {
  return PASCAL_CASE.test(name);
}

/** "PrimaryButton" -> "Primary Button", "large_icon" -> "Large Icon" (Storybook's storyNameFromExport). */
export function storyNameFromExport(exportName) {
  return exportName
    .replace(/[_-]+/g, ' ')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .trim()
    .replace(/^\w/, (c) => c.toUpperCase());
}

/** Storybook-style id segment: lowercase words joined by dashes. */
export function idSegment(text) {
  return storyNameFromExport(text)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

function langOf(file) {
  const ext = path.extname(file).slice(1);
  if (ext === 'tsx' || ext === 'ts' || ext === 'jsx') return ext;
  return 'jsx'; // .js/.mjs stories commonly hold JSX too
}

function parse(file, code) {
  const result = parseSync(file, code, { lang: langOf(file), sourceType: 'module' });
  const error = result.errors.length > 0 ? result.errors[0].message : null;
  return { result, error };
}

/**
 * The value exports of a module: `{ exports, defaultName, error }`.
 * `exports` holds export names ("default" for a default export, type-only
 * exports left out); `defaultName` is the local name of a named default export
 * (`export default function Card`); `error` is the first syntax error or null.
 */
export function readExports(file, code) {
  const { result, error } = parse(file, code);
  const exports = [];
  let defaultName = null;
  for (const statement of result.module.staticExports) {
    for (const entry of statement.entries) {
      if (entry.isType) continue;
      if (entry.exportName.kind === 'Default') {
        exports.push('default');
        if (entry.localName.name && entry.localName.name !== 'default') defaultName = entry.localName.name;
      } else if (entry.exportName.kind === 'Name' && entry.exportName.name) {
        exports.push(entry.exportName.name === 'default' ? 'default' : entry.exportName.name);
      }
    }
  }
  return { exports: [...new Set(exports)], defaultName, error };
}

// Type-only wrappers (`{...} satisfies Meta`, `x as Story`, `(x)`) around a value.
function unwrap(node) {
  let current = node;
  while (
    current &&
    (current.type === 'TSSatisfiesExpression' ||
      current.type === 'TSAsExpression' ||
      current.type === 'TSNonNullExpression' ||
      current.type === 'ParenthesizedExpression')
  ) {
    current = current.expression;
  }
  return current;
}

function propertyKey(property) {
  if (property.computed) return null;
  if (property.key.type === 'Identifier') return property.key.name;
  if (property.key.type === 'Literal') return String(property.key.value);
  return null;
}

const NOT_STATIC = Symbol('not static');

/**
 * Evaluates a literal expression (strings, numbers, booleans, null, arrays,
 * objects, `-1`, template strings without substitutions, and spreads of
 * `Story.args`). Anything else (JSX, functions, identifiers) is NOT_STATIC and
 * left out of the listing: the browser uses the real module's values.
 */
function evaluate(node, scope) {
  const n = unwrap(node);
  if (!n) return NOT_STATIC;
  switch (n.type) {
    case 'Literal':
      return n.regex ? NOT_STATIC : n.value;
    case 'TemplateLiteral':
      return n.expressions.length === 0 ? n.quasis.map((q) => q.value.cooked).join('') : NOT_STATIC;
    case 'UnaryExpression': {
      const value = evaluate(n.argument, scope);
      if (typeof value !== 'number') return NOT_STATIC;
      if (n.operator === '-') return -value;
      return n.operator === '+' ? value : NOT_STATIC;
    }
    case 'ArrayExpression': {
      const items = [];
      for (const element of n.elements) {
        const value = element ? evaluate(element, scope) : null;
        if (value === NOT_STATIC) return NOT_STATIC;
        items.push(value);
      }
      return items;
    }
    case 'ObjectExpression':
      return evaluateObject(n, scope, false);
    case 'MemberExpression': {
      // `...Primary.args` reuses another story's args
      const object = unwrap(n.object);
      if (!n.computed && object.type === 'Identifier' && n.property.name === 'args') {
        const args = scope.storyArgs(object.name);
        return args ?? NOT_STATIC;
      }
      return NOT_STATIC;
    }
    default:
      return NOT_STATIC;
  }
}

// Objects keep their static properties and drop the others, so that one
// callback arg (`onClick: fn()`) does not hide every other arg from the listing.
function evaluateObject(node, scope, strict) {
  const out = {};
  for (const property of node.properties) {
    if (property.type === 'SpreadElement') {
      const spread = evaluate(property.argument, scope);
      if (spread && typeof spread === 'object' && !Array.isArray(spread)) Object.assign(out, spread);
      else if (strict) return NOT_STATIC;
      continue;
    }
    const key = propertyKey(property);
    if (key === null || property.kind !== 'init' || property.method) continue;
    const value = evaluate(property.value, scope);
    if (value !== NOT_STATIC) out[key] = value;
  }
  return out;
}

function objectProperties(node) {
  const n = unwrap(node);
  if (!n || n.type !== 'ObjectExpression') return null;
  const props = new Map();
  for (const property of n.properties) {
    if (property.type === 'SpreadElement') {
      const target = unwrap(property.argument);
      if (target.type === 'Identifier') props.set(`...${target.name}`, target);
      continue;
    }
    const key = propertyKey(property);
    if (key !== null) props.set(key, property.value);
  }
  return props;
}

const isRecord = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** A story's argTypes over its meta's, each arg's fields merged (Storybook's combineParameters). */
function mergeArgTypes(meta, story) {
  const merged = {};
  for (const source of [meta, story]) {
    if (!isRecord(source)) continue;
    for (const [name, value] of Object.entries(source)) {
      if (isRecord(value)) merged[name] = { ...(isRecord(merged[name]) ? merged[name] : {}), ...value };
    }
  }
  return merged;
}

function patternMatches(pattern, name) {
  if (Array.isArray(pattern)) return pattern.includes(name);
  if (pattern instanceof RegExp) return pattern.test(name);
  return false;
}

function staticPattern(node) {
  const n = unwrap(node);
  if (!n) return null;
  if (n.type === 'Literal' && n.regex) {
    try {
      return new RegExp(n.regex.pattern, n.regex.flags);
    } catch {
      return null;
    }
  }
  const value = evaluate(n, { storyArgs: () => null });
  return Array.isArray(value) ? value.filter((v) => typeof v === 'string') : null;
}

/**
 * Reads a CSF file: `{ meta, stories, error }`.
 *
 * `meta` = `{ title, component, args }` where `component` is the local name of
 * `meta.component` and the import it came from (`{ local, imported, source }`),
 * or null. `stories` = `[{ exportName, name, args, argTypes }]` in export order, with
 * `meta.args` merged under each story's own literal args, honouring
 * `includeStories` / `excludeStories` when they are literal. `argTypes` are the
 * static parts of `meta.argTypes` and the story's own, merged per arg as
 * Storybook merges them (a mapping to JSX or a function is left out).
 */
export function readStories(file, code) {
  const { result, error } = parse(file, code);
  const body = result.program.body;
  const declarations = new Map(); // local name -> initializer node
  const imports = new Map(); // local name -> { imported, source }
  const assignedArgs = new Map(); // CSF2: Story.args = {...}
  const assignedNames = new Map(); // CSF2: Story.storyName = '...'
  const named = []; // [exportName, node | null]
  let metaNode = null;

  const declare = (declaration) => {
    if (declaration.type === 'VariableDeclaration') {
      for (const d of declaration.declarations) {
        if (d.id.type === 'Identifier' && d.init) declarations.set(d.id.name, d.init);
      }
    } else if (declaration.type === 'FunctionDeclaration' && declaration.id) {
      declarations.set(declaration.id.name, declaration);
    }
  };

  for (const statement of body) {
    if (statement.type === 'ImportDeclaration' && statement.importKind !== 'type') {
      for (const specifier of statement.specifiers) {
        const imported =
          specifier.type === 'ImportDefaultSpecifier'
            ? 'default'
            : specifier.type === 'ImportNamespaceSpecifier'
              ? '*'
              : (specifier.imported.name ?? specifier.imported.value);
        imports.set(specifier.local.name, { imported, source: statement.source.value });
      }
    } else if (statement.type === 'VariableDeclaration' || statement.type === 'FunctionDeclaration') {
      declare(statement);
    } else if (statement.type === 'ExportNamedDeclaration' && statement.exportKind !== 'type') {
      if (statement.declaration) {
        declare(statement.declaration);
        const d = statement.declaration;
        if (d.type === 'VariableDeclaration') {
          for (const v of d.declarations) if (v.id.type === 'Identifier') named.push([v.id.name, v.id.name]);
        } else if (d.type === 'FunctionDeclaration' && d.id) {
          named.push([d.id.name, d.id.name]);
        }
      } else if (!statement.source) {
        for (const specifier of statement.specifiers) {
          if (specifier.exportKind === 'type') continue;
          const exported = specifier.exported.name ?? specifier.exported.value;
          if (exported === 'default') metaNode = { ref: specifier.local.name };
          else named.push([exported, specifier.local.name]);
        }
      }
    } else if (statement.type === 'ExportDefaultDeclaration') {
      metaNode = statement.declaration;
    } else if (statement.type === 'ExpressionStatement') {
      const e = statement.expression;
      if (e.type === 'AssignmentExpression' && e.left.type === 'MemberExpression' && !e.left.computed) {
        const target = unwrap(e.left.object);
        if (target.type === 'Identifier' && e.left.property.name === 'args') assignedArgs.set(target.name, e.right);
        if (target.type === 'Identifier' && e.left.property.name === 'storyName') assignedNames.set(target.name, e.right);
      }
    }
  }

  const resolveNode = (node) => {
    let current = node && node.ref ? declarations.get(node.ref) : node;
    current = unwrap(current);
    // `export default meta` where `const meta = {...}`; `const Story = Other` aliases
    const seen = new Set();
    while (current && current.type === 'Identifier' && declarations.has(current.name) && !seen.has(current.name)) {
      seen.add(current.name);
      current = unwrap(declarations.get(current.name));
    }
    return current;
  };

  const storyArgsCache = new Map();
  const scope = {
    storyArgs(local) {
      if (storyArgsCache.has(local)) return storyArgsCache.get(local);
      storyArgsCache.set(local, null); // guards self-reference
      const value = ownArgs(local);
      storyArgsCache.set(local, value);
      return value;
    },
  };

  // A story's own args: its `args` property, args spread in from `...Other`,
  // then CSF2 `Story.args = {...}` assignments.
  function ownArgs(local) {
    const node = resolveNode({ ref: local });
    let args = {};
    const props = node ? objectProperties(node) : null;
    if (props) {
      for (const [key, value] of props) {
        if (key.startsWith('...')) {
          const inherited = scope.storyArgs(value.name);
          if (inherited) args = { ...args, ...inherited };
        }
      }
      if (props.has('args')) {
        const value = evaluate(props.get('args'), scope);
        if (value && typeof value === 'object' && !Array.isArray(value)) args = { ...args, ...value };
      }
    }
    if (assignedArgs.has(local)) {
      const value = evaluate(assignedArgs.get(local), scope);
      if (value && typeof value === 'object' && !Array.isArray(value)) args = { ...args, ...value };
    }
    return args;
  }

  const metaProps = objectProperties(resolveNode(metaNode)) ?? new Map();
  const title = metaProps.has('title') ? evaluate(metaProps.get('title'), scope) : null;
  const metaArgs = metaProps.has('args') ? evaluate(metaProps.get('args'), scope) : {};
  const metaArgTypes = metaProps.has('argTypes') ? evaluate(metaProps.get('argTypes'), scope) : {};
  let component = null;
  const componentNode = unwrap(metaProps.get('component'));
  if (componentNode && componentNode.type === 'Identifier') {
    const binding = imports.get(componentNode.name);
    component = { local: componentNode.name, imported: binding?.imported ?? null, source: binding?.source ?? null };
  }
  const include = metaProps.has('includeStories') ? staticPattern(metaProps.get('includeStories')) : null;
  const exclude = metaProps.has('excludeStories') ? staticPattern(metaProps.get('excludeStories')) : null;

  const stories = [];
  for (const [exportName, local] of named) {
    if (exportName === '__namedExportsOrder') continue;
    if (include && !patternMatches(include, exportName)) continue;
    if (exclude && patternMatches(exclude, exportName)) continue;
    const node = resolveNode({ ref: local });
    const props = node ? objectProperties(node) : null;
    let name = null;
    if (props?.has('name')) name = evaluate(props.get('name'), scope);
    if (typeof name !== 'string' && props?.has('storyName')) name = evaluate(props.get('storyName'), scope);
    if (typeof name !== 'string' && assignedNames.has(local)) name = evaluate(assignedNames.get(local), scope);
    stories.push({
      exportName,
      name: typeof name === 'string' ? name : storyNameFromExport(exportName),
      args: { ...(metaArgs && typeof metaArgs === 'object' && !Array.isArray(metaArgs) ? metaArgs : {}), ...scope.storyArgs(local) },
      argTypes: mergeArgTypes(metaArgTypes, props?.has('argTypes') ? evaluate(props.get('argTypes'), scope) : {}),
    });
  }
  return { meta: { title: typeof title === 'string' ? title : null, component }, stories, error };
}
