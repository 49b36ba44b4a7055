// The controls panel: one input per arg of the story (rows from controls.ts).
// An edit calls `onChange` with the new value as the story's args hold it
// (an option's key, before `mapping`); the story re-renders with it.
import { useEffect, useState, type ReactNode } from 'react';
import type { Args } from './catalog';
import type { ControlRow } from './controls';

type Change = (name: string, value: unknown) => void;

const labelOf = (row: ControlRow, option: unknown): string => row.labels[String(option)] ?? String(option);

function toDateInput(value: unknown): string {
  const date = value instanceof Date ? value : typeof value === 'number' || typeof value === 'string' ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) return '';
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** JSON text of an object arg; the text stays as typed (and an error shows) until it parses. */
function ObjectControl({ row, value, onChange }: { row: ControlRow; value: unknown; onChange: Change }): ReactNode {
  const formatted = value === undefined ? '' : JSON.stringify(value, null, 2);
  const [text, setText] = useState(formatted);
  const [error, setError] = useState<string | null>(null);
  // a change from elsewhere (useArgs, reset) replaces what is shown
  useEffect(() => {
    setText(formatted);
    setError(null);
  }, [formatted]);
  return (
    <div className="studio-control-object">
      <textarea
        data-testid={`control-${row.name}`}
        value={text}
        rows={Math.min(8, text.split('\n').length + 1)}
        aria-invalid={error ? true : undefined}
        onChange={(event) => {
          const next = event.target.value;
          setText(next);
          try {
            const parsed: unknown = next.trim() === '' ? undefined : JSON.parse(next);
            setError(null);
            onChange(row.name, parsed);
          } catch (e) {
            setError(e instanceof Error ? e.message : String(e));
          }
        }}
      />
      {error && (
        <p className="studio-control-error" data-testid={`control-error-${row.name}`} role="alert">
          Invalid JSON: {error}
        </p>
      )}
    </div>
  );
}

function Control({ row, value, onChange }: { row: ControlRow; value: unknown; onChange: Change }): ReactNode {
  const testId = `control-${row.name}`;
  switch (row.type) {
    case 'boolean':
      return <input type="checkbox" data-testid={testId} checked={Boolean(value)} onChange={(e) => onChange(row.name, e.target.checked)} />;
    case 'number':
    case 'range':
      return (
        <span className="studio-control-number">
          <input
            type={row.type}
            data-testid={testId}
            min={row.min}
            max={row.max}
            step={row.step}
            value={typeof value === 'number' ? value : ''}
            onChange={(e) => onChange(row.name, e.target.value === '' ? undefined : Number(e.target.value))}
          />
          {row.type === 'range' && <output>{String(value ?? '')}</output>}
        </span>
      );
    case 'color':
      return (
        <span className="studio-control-color">
          <input type="text" data-testid={testId} value={typeof value === 'string' ? value : ''} onChange={(e) => onChange(row.name, e.target.value)} />
          <input
            type="color"
            aria-label={`${row.name} colour`}
            value={typeof value === 'string' && /^#[0-9a-f]{6}$/i.test(value) ? value : '#000000'}
            onChange={(e) => onChange(row.name, e.target.value)}
          />
          {row.presetColors.map((colour) => (
            <button key={colour} type="button" className="studio-swatch" title={colour} style={{ background: colour }} onClick={() => onChange(row.name, colour)} />
          ))}
        </span>
      );
    case 'date':
      return (
        <input
          type="datetime-local"
          data-testid={testId}
          value={toDateInput(value)}
          // Storybook's date control stores a timestamp
          onChange={(e) => onChange(row.name, e.target.value ? new Date(e.target.value).getTime() : undefined)}
        />
      );
    case 'object':
      return <ObjectControl row={row} value={value} onChange={onChange} />;
    case 'select':
    case 'multi-select': {
      const multiple = row.type === 'multi-select';
      const chosen = multiple ? (Array.isArray(value) ? value : []) : [value];
      return (
        <select
          data-testid={testId}
          multiple={multiple}
          value={multiple ? chosen.map((v) => String(row.options.indexOf(v))) : String(row.options.indexOf(value))}
          onChange={(e) => {
            const picked = [...e.target.selectedOptions].map((o) => (o.value === '-1' ? undefined : row.options[Number(o.value)]));
            onChange(row.name, multiple ? picked : picked[0]);
          }}
        >
          {!multiple && <option value="-1">Choose option…</option>}
          {row.options.map((option, index) => (
            <option key={index} value={String(index)}>
              {labelOf(row, option)}
            </option>
          ))}
        </select>
      );
    }
    case 'radio':
    case 'inline-radio':
    case 'check':
    case 'inline-check': {
      const check = row.type === 'check' || row.type === 'inline-check';
      const chosen = check ? (Array.isArray(value) ? value : []) : [value];
      return (
        <fieldset data-testid={testId} className={row.type.startsWith('inline') ? 'studio-inline' : undefined}>
          {row.options.map((option, index) => (
            <label key={index}>
              <input
                type={check ? 'checkbox' : 'radio'}
                name={`control-${row.name}`}
                value={String(index)}
                checked={chosen.includes(option)}
                onChange={(e) => onChange(row.name, check ? (e.target.checked ? [...chosen, option] : chosen.filter((v) => v !== option)) : option)}
              />
              {labelOf(row, option)}
            </label>
          ))}
        </fieldset>
      );
    }
    default:
      return <input type="text" data-testid={testId} value={value === undefined || value === null ? '' : String(value)} onChange={(e) => onChange(row.name, e.target.value)} />;
  }
}

export function ControlsPanel({ rows, args, onChange, onReset }: { rows: ControlRow[]; args: Args; onChange: Change; onReset: () => void }): ReactNode {
  return (
    <section className="studio-controls" data-testid="studio-controls" aria-label="Controls">
      <header className="studio-controls-header">
        <span>Controls</span>
        <button type="button" data-testid="controls-reset" onClick={onReset}>
          Reset
        </button>
      </header>
      {rows.length === 0 ? (
        <p className="studio-muted">This story has no controls.</p>
      ) : (
        <table>
          <tbody>
            {rows.map((row) => (
              <tr key={row.name} data-testid={`control-row-${row.name}`}>
                <th scope="row" title={row.description ?? undefined}>
                  {row.name}
                </th>
                <td>
                  <Control row={row} value={args[row.name]} onChange={onChange} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
