// The list of the repository's components and their stories, with a filter.
import { useState, type ReactNode } from 'react';
import type { ComponentEntry } from './catalog';
import { formatHash } from './route';

function matches(entry: ComponentEntry, query: string): boolean {
  const q = query.trim().toLowerCase();
  if (!q) return true;
  return (
    entry.name.toLowerCase().includes(q) ||
    entry.module.toLowerCase().includes(q) ||
    entry.stories.some((s) => s.name.toLowerCase().includes(q))
  );
}

export function Sidebar({
  components,
  selected,
  selectedStory,
}: {
  components: ComponentEntry[];
  selected: string | null;
  selectedStory: string | null;
}): ReactNode {
  const [query, setQuery] = useState('');
  const shown = components.filter((c) => matches(c, query));
  return (
    <nav className="studio-sidebar" data-testid="studio-sidebar" aria-label="Components">
      <input
        className="studio-search"
        data-testid="studio-search"
        type="search"
        placeholder={`Search ${components.length} components`}
        value={query}
        onChange={(event) => setQuery(event.target.value)}
      />
      <ul className="studio-list">
        {shown.map((c) => (
          <li key={c.id}>
            <a
              href={formatHash({ component: c.id, story: null })}
              className="studio-item"
              data-testid={`component-${c.name}`}
              aria-current={c.id === selected && !selectedStory ? 'page' : undefined}
              title={c.module}
            >
              {c.name}
            </a>
            {c.stories.length > 0 && (
              <ul className="studio-stories">
                {c.stories.map((s) => (
                  <li key={s.id}>
                    <a
                      href={formatHash({ component: c.id, story: s.exportName })}
                      className="studio-item studio-story"
                      data-testid={`story-${c.name}-${s.exportName}`}
                      aria-current={c.id === selected && s.exportName === selectedStory ? 'page' : undefined}
                    >
                      {s.name}
                    </a>
                  </li>
                ))}
              </ul>
            )}
          </li>
        ))}
        {shown.length === 0 && <li className="studio-muted">No component matches “{query}”.</li>}
      </ul>
    </nav>
  );
}
