// The repository's Storybook in the studio's Vite server: the browser module
// that hands the app Storybook's portable-stories API, the repository's
// previewHead/previewBody (its viteFinal is applied by ../compose-config.mjs).
import { RENDERER } from './detect.mjs';

/**
 * The `virtual:studio/storybook` module for `project` (see load.mjs): the
 * portable-stories API, Storybook's preview API and the addons' annotations.
 * Namespace imports: what a Storybook version lacks is then undefined, not a
 * module that fails to link.
 */
export function storybookModuleCode(project) {
  const lines = [
    `import * as portable from ${JSON.stringify(project.portable)};`,
    `import * as previewApi from ${JSON.stringify(project.previewApi)};`,
    ...project.annotations.map((specifier, index) => `import * as annotations${index} from ${JSON.stringify(specifier)};`),
    `export const version = ${JSON.stringify(project.version)};`,
    // only a page asked to play a story loads Testing Library
    `export const loadTest = ${project.test ? `() => import(${JSON.stringify(project.test)})` : 'null'};`,
    `export const annotations = [${project.annotations.map((_, index) => `annotations${index}`).join(', ')}];`,
    'export { portable, previewApi };',
  ];
  return lines.join('\n') + '\n';
}

/** What Vite must pre-bundle at startup so that the first page never finds a new dependency. */
export function storybookDeps(project) {
  const deps = [project.portable, RENDERER, project.previewApi, ...(project.test ? [project.test] : []), ...project.annotations];
  return [...new Set(deps.filter((specifier) => !specifier.startsWith('/')))];
}

/**
 * The plugin that puts main's previewHead / previewBody into the studio page,
 * as Storybook's iframe has them, with the globals its iframe sets before any
 * of its modules runs: `global` (addons bundle Node-style code such as
 * jest-mock's `new ModuleMocker(global)` in addon-interactions 7) and, for
 * Storybook 7, the feature flags.
 */
export function previewHtmlPlugin(project) {
  // `<` escaped: the flags come from main and sit inside a <script>
  const features = project.features ? `window.FEATURES = ${JSON.stringify(project.features).replaceAll('<', '\\u003c')};` : '';
  const globals = `<script>window.global = window;${features}</script>`;
  return {
    name: 'component-studio:storybook-html',
    transformIndexHtml: (html) => html.replace('</head>', `${globals}${project.previewHead}</head>`).replace(/<body([^>]*)>/, (tag) => `${tag}${project.previewBody}`),
  };
}
