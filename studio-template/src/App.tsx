// Component Studio: the repository's components in a sidebar, the selected one
// alone on the canvas (with a globals toolbar and a controls panel), the
// sandbox's state in a banner. With `?full` (route.ts) the page shows the
// story alone, without any of that chrome; so does `iframe.html?id=<storyId>`,
// for the story of that Storybook id.
import type { ReactNode } from 'react';
import config from 'virtual:studio/config';
import { findComponent, findStory } from './catalog';
import { Canvas } from './Canvas';
import { BLANK_COMPONENT, isIframePath } from './route';
import { ErrorPanel } from './ErrorPanel';
import { useCatalog, usePageFlags, useProject, useSelectionAndLive } from './hooks';
import { Sidebar } from './Sidebar';
import { StatusBanner } from './StatusBanner';
import { useStorybookId } from './storyId';

export function App(): ReactNode {
  const { catalog, error } = useCatalog();
  const project = useProject(catalog ? catalog.preview : undefined);
  // iframe.html?id= names its story by id; any other page without a component in its link
  // lands on the first story, as Storybook does (the URL then says which)
  const { route: hashRoute, status } = useSelectionAndLive(catalog, !isIframePath(window.location.pathname));
  const page = usePageFlags(hashRoute);
  const full = page.flags.full;
  // iframe.html?id=<storyId>: the story Storybook knows by that id, instead of the hash's
  const storyId = page.flags.storyId;
  const lookup = useStorybookId(catalog, storyId || null);
  const route = storyId === null ? hashRoute : lookup.status === 'found' ? { component: lookup.found.component.id, story: lookup.found.story.exportName } : { component: null, story: null };

  const entry = catalog && route.component ? findComponent(catalog, route.component) : undefined;
  const story = entry && route.story ? (findStory(entry, route.story) ?? null) : null;

  let main: ReactNode;
  if (!catalog) {
    main = error ? <ErrorPanel title="Could not load the component list" error={error} /> : <p className="studio-muted">Loading components…</p>;
  } else if (storyId === '') {
    main = (
      <p className="studio-muted" data-testid="studio-not-found">
        iframe.html needs ?id=&lt;story id&gt;, Storybook's id of the story to show (such as button--primary).
      </p>
    );
  } else if (storyId !== null && lookup.status === 'pending') {
    main = <p className="studio-muted">Finding story {storyId}…</p>;
  } else if (storyId !== null && lookup.status === 'error') {
    main = <ErrorPanel title={`Could not look up the story ${storyId}`} error={lookup.error} />;
  } else if (storyId !== null && lookup.status === 'missing') {
    main = (
      <p className="studio-muted" data-testid="studio-not-found">
        No story with the Storybook id “{storyId}”.
      </p>
    );
  } else if (route.component === BLANK_COMPONENT) {
    main = <div data-testid="studio-blank" />;
  } else if (!route.component) {
    main = (
      <p className="studio-muted" data-testid="studio-empty">
        {catalog.components.length === 0
          ? 'No components found in this repository.'
          : `Select one of the ${catalog.components.length} components.`}
      </p>
    );
  } else if (!entry) {
    main = (
      <p className="studio-muted" data-testid="studio-not-found">
        No component named “{route.component}”.
      </p>
    );
  } else if (route.story && !story) {
    main = (
      <p className="studio-muted" data-testid="studio-not-found">
        {entry.name} has no story “{route.story}”.
      </p>
    );
  } else {
    // the canvas starts loading the component while the project setup still loads
    const canvas = <Canvas key={entry.id} entry={entry} story={story} project={project} page={page} />;
    main = full ? (
      canvas
    ) : (
      <>
        <header className="studio-title" data-testid="studio-title">
          <span>{entry.name}</span>
          {story && <span className="studio-title-story"> / {story.name}</span>}
          <span className="studio-title-module">{entry.module}</span>
        </header>
        {canvas}
      </>
    );
  }

  if (full) {
    return (
      <div className="studio-app studio-full" data-testid="studio-full">
        {main}
      </div>
    );
  }
  return (
    <div className="studio-app">
      {config.wsUrl && <StatusBanner sandboxId={config.sandboxId} state={status} />}
      <div className="studio-body">
        <Sidebar components={catalog?.components ?? []} selected={entry?.id ?? null} selectedStory={story?.exportName ?? null} />
        <main className="studio-main">{main}</main>
      </div>
    </div>
  );
}
