// The repository's Storybook for the studio's Vite config (vite.config.mjs):
// loaded once at startup, then used by the studio plugin (the browser module)
// and the config (its viteFinal through ../compose-config.mjs; the plugins of
// previewHead/previewBody and staticDirs).
import { loadStorybook } from './load.mjs';
import { staticDirsPlugin } from './static-dirs.mjs';
import { previewHtmlPlugin, storybookDeps, storybookModuleCode } from './vite.mjs';

/**
 * Loads `found` (detect.mjs). A Storybook configuration that cannot be loaded
 * (main.* throws) is reported, and its stories are composed without main's
 * addons and viteFinal rather than the studio not starting.
 */
export async function prepareStorybook(found) {
  let project;
  try {
    project = await loadStorybook(found);
  } catch (error) {
    console.error(`component studio: could not load ${found.mainFile}: ${error instanceof Error ? error.stack : error}`);
    project = await loadStorybook({ ...found, mainFile: null });
  }
  return {
    project,
    code: storybookModuleCode(project),
    deps: storybookDeps(project),
    /** The plugins serving Storybook's page globals, main's previewHead/previewBody and staticDirs, after every other. */
    plugins: (studioRoot) => [
      previewHtmlPlugin(project),
      ...(project.staticDirs.length > 0 ? [staticDirsPlugin(project.staticDirs, studioRoot)] : []),
    ],
  };
}
