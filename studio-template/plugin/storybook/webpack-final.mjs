// The aliases a webpack Storybook's `.storybook/main` adds in webpackFinal
// (`config.resolve.alias['~'] = ...`): main's own webpackFinal is called with
// an empty webpack config of the shape Storybook passes, and the aliases it
// leaves are read. Only main's: the framework's and addons' webpackFinal
// build Storybook's own webpack setup (loaders, Babel), which Vite replaces.
// What a webpackFinal does besides aliases (loaders, plugins such as
// TsconfigPathsPlugin, whose paths the studio reads from tsconfig itself) is
// not applied.
import { viteAliases } from '../repo-build/webpack-app.mjs';

function emptyWebpackConfig() {
  return {
    mode: 'development',
    entry: [],
    output: {},
    module: { rules: [] },
    plugins: [],
    resolve: { alias: {}, extensions: ['.mjs', '.js', '.jsx', '.ts', '.tsx', '.json'], modules: ['node_modules'], plugins: [], fallback: {} },
    resolveLoader: {},
    optimization: {},
    performance: {},
  };
}

/**
 * Vite aliases from `main.webpackFinal`, or [] without one. A webpackFinal
 * that throws on the empty config is reported and its aliases left out.
 */
export async function webpackFinalAliases(main, { configDir, repoRoot, presets }) {
  if (typeof main?.webpackFinal !== 'function') return [];
  try {
    const config = (await main.webpackFinal(emptyWebpackConfig(), { configType: 'DEVELOPMENT', configDir, presets })) ?? {};
    // relative targets are taken from the project's root, as webpack's context
    return viteAliases(config.resolve?.alias, repoRoot);
  } catch (error) {
    console.error(`component studio: main's webpackFinal failed on an empty webpack config, its aliases are not applied: ${error instanceof Error ? error.message : error}`);
    return [];
  }
}
