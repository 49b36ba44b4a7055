// The globals toolbar above the canvas: one menu per global (toolbar.ts); a
// global the story sets itself is shown, disabled, as Storybook's toolbar does.
import type { ReactNode } from 'react';
import type { ToolbarMenu } from './toolbar';

export function Toolbar({ menus, onChange }: { menus: ToolbarMenu[]; onChange: (global: string, value: unknown) => void }): ReactNode {
  return (
    <div className="studio-toolbar" data-testid="studio-toolbar" role="toolbar" aria-label="Globals">
      {menus.map((menu) => (
        <label key={menu.global} className="studio-toolbar-item">
          <span>{menu.title}</span>
          <select
            data-testid={`toolbar-${menu.global}`}
            value={String(menu.selected)}
            disabled={menu.locked}
            title={menu.locked ? `${menu.title} is set by the story's globals` : undefined}
            onChange={(event) => {
              const option = menu.options[Number(event.target.value)];
              if (option) onChange(menu.global, option.value);
            }}
          >
            {menu.selected === -1 && <option value="-1">—</option>}
            {menu.options.map((option, index) => (
              <option key={index} value={String(index)}>
                {option.label}
              </option>
            ))}
          </select>
        </label>
      ))}
    </div>
  );
}
