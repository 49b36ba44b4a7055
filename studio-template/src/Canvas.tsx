// Renders the selected component (or one of its stories) alone, inside the
// project's decorators and wrapper, behind an error boundary.
import { createElement, useEffect, useMemo, useState, type ElementType, type ReactNode } from 'react';
import type { ComponentEntry, StoryEntry } from './catalog';
import { prepare, readMeta, readStory, type Annotations, type Prepared } from './csf';
import { ErrorBoundary, ErrorPanel } from './ErrorPanel';
import { importModule, pickComponent, type ModuleRecord } from './modules';

/** The parts every render shares: `.storybook/preview` annotations and the configured wrapper. */
export interface Project {
  annotations: Annotations;
  wrapper: ElementType | null;
  error: unknown;
}

type Loaded =
  | { status: 'loading' }
  | { status: 'error'; error: unknown }
  | { status: 'ready'; component: ModuleRecord | null; stories: ModuleRecord | null };

function Run({ prepared }: { prepared: Prepared }): ReactNode {
  return prepared.run(prepared.context);
}

function useModules(entry: ComponentEntry): Loaded {
  const [loaded, setLoaded] = useState<Loaded>({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const failed = loaded.status === 'error';

  // A module that failed to load (syntax error mid-edit) is retried after the
  // next successful hot update instead of needing a manual reload.
  useEffect(() => {
    if (!failed || !import.meta.hot) return;
    const retry = (): void => setAttempt((n) => n + 1);
    import.meta.hot.on('vite:afterUpdate', retry);
    return () => import.meta.hot?.off('vite:afterUpdate', retry);
  }, [failed]);

  useEffect(() => {
    let current = true;
    setLoaded({ status: 'loading' });
    const isComponentModule = entry.exports.length > 0;
    Promise.all([
      isComponentModule ? importModule(entry.module, attempt) : Promise.resolve(null),
      entry.storiesModule ? importModule(entry.storiesModule, attempt) : Promise.resolve(null),
    ]).then(
      ([component, stories]) => current && setLoaded({ status: 'ready', component, stories }),
      (error: unknown) => current && setLoaded({ status: 'error', error }),
    );
    return () => {
      current = false;
    };
  }, [entry.module, entry.storiesModule, entry.exports.length, attempt]);
  return loaded;
}

export function Canvas({
  entry,
  story,
  project,
}: {
  entry: ComponentEntry;
  story: StoryEntry | null;
  /** null while .storybook/preview and the wrapper are still loading */
  project: Project | null;
}): ReactNode {
  const loaded = useModules(entry);

  const annotations = project?.annotations;
  const prepared = useMemo((): Prepared | Error | null => {
    if (loaded.status !== 'ready' || !annotations) return null;
    const component = loaded.component ? pickComponent(loaded.component, entry) : undefined;
    if (!story) {
      return prepare({ id: entry.id, name: entry.name, title: entry.name, component, project: annotations });
    }
    const meta = loaded.stories ? readMeta(loaded.stories) : {};
    const storyAnnotations = loaded.stories ? readStory(loaded.stories, story.exportName) : undefined;
    if (!storyAnnotations) return new Error(`${entry.storiesModule ?? entry.module} has no story export "${story.exportName}"`);
    return prepare({
      id: story.id,
      name: story.name,
      title: meta.title ?? entry.name,
      component: meta.component ?? component,
      project: annotations,
      meta,
      story: storyAnnotations,
    });
  }, [loaded, entry, story, annotations]);

  let content: ReactNode;
  if (project?.error) {
    content = <ErrorPanel title="Could not load the project setup (.storybook/preview or wrapper)" error={project.error} />;
  } else if (loaded.status === 'error') {
    content = <ErrorPanel title={`Could not load ${entry.module}`} error={loaded.error} />;
  } else if (prepared instanceof Error) {
    content = <ErrorPanel title="Story not found" error={prepared} />;
  } else if (prepared && project) {
    const rendered = <Run prepared={prepared} />;
    content = (
      <ErrorBoundary key={`${entry.id}/${story?.exportName ?? ''}`}>
        {project.wrapper ? createElement(project.wrapper, null, rendered) : rendered}
      </ErrorBoundary>
    );
  }
  // Storybook's `parameters.layout`: padded (default), centered or fullscreen
  const layout = prepared && !(prepared instanceof Error) ? prepared.context.parameters.layout : undefined;
  const state = project?.error || loaded.status === 'error' ? 'error' : prepared && project ? 'ready' : 'loading';

  return (
    <div
      className="studio-canvas"
      data-testid="studio-canvas"
      data-component={entry.id}
      data-story={story?.id ?? ''}
      data-state={state}
      data-layout={typeof layout === 'string' ? layout : 'padded'}
    >
      {content}
    </div>
  );
}
