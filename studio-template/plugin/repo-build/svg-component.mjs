// `import { ReactComponent as Logo } from './logo.svg'`: Create React App's
// SVG import (svgr's webpack loader), for apps built with webpack. The SVG
// module keeps its default export (the file's URL, as Vite gives it) and gets
// a `ReactComponent` that renders the file's <svg> with its attributes as
// React props and its content as-is; props given to the component override
// the file's attributes. svgr's options (icon sizing, titleProp, SVGO) are
// not applied.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const SVG_FILE = /\.svg$/;
const ATTRIBUTE = /([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'))?/g;
// XML attribute names React spells differently
const RENAMED = { class: 'className', for: 'htmlFor', 'xlink:href': 'xlinkHref', 'xmlns:xlink': 'xmlnsXlink', 'xml:space': 'xmlSpace', 'xml:lang': 'xmlLang' };

const camel = (name) => name.replace(/[-:]([a-z])/g, (_, letter) => letter.toUpperCase());

function styleObject(text) {
  const style = {};
  for (const declaration of text.split(';')) {
    const colon = declaration.indexOf(':');
    if (colon < 0) continue;
    const property = declaration.slice(0, colon).trim();
    if (property) style[property.startsWith('--') ? property : camel(property)] = declaration.slice(colon + 1).trim();
  }
  return style;
}

/** React props for the attributes of an <svg ...> start tag's inside (`text`). */
export function svgProps(text) {
  const props = {};
  for (const [, name, double, single] of text.matchAll(ATTRIBUTE)) {
    const value = double ?? single ?? '';
    if (name === 'style') props.style = styleObject(value);
    else if (name.startsWith('data-') || name.startsWith('aria-')) props[name] = value;
    else props[RENAMED[name] ?? camel(name)] = value;
  }
  return props;
}

/** The module code for `file`, whose text is `source`. */
export function svgModuleCode(file, source) {
  const match = /<svg\b([^>]*)>([\s\S]*)<\/svg\s*>/i.exec(source);
  const props = match ? svgProps(match[1]) : {};
  const inner = match ? match[2] : '';
  return [
    "import { createElement, forwardRef } from 'react';",
    `import url from ${JSON.stringify(`${file}?url`)};`,
    `const attributes = ${JSON.stringify(props)};`,
    `const inner = { __html: ${JSON.stringify(inner)} };`,
    'export const ReactComponent = forwardRef(function SvgComponent(props, ref) {',
    '  return createElement("svg", { ...attributes, ...props, ref, dangerouslySetInnerHTML: inner });',
    '});',
    'export default url;',
    '',
  ].join('\n');
}

export function svgComponentPlugin(repoRoot) {
  const prefix = repoRoot + path.sep;
  return {
    name: 'component-studio:svg-component',
    enforce: 'pre',
    async load(id) {
      // only a plain import: `?url`, `?raw` and the like stay Vite's
      if (id.includes('?') || !SVG_FILE.test(id) || !id.startsWith(prefix)) return null;
      this.addWatchFile(id);
      return svgModuleCode(id, await readFile(id, 'utf8'));
    },
  };
}
