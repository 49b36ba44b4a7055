import type { ComponentType } from 'react';
import '../src/styles.css';

const preview = {
  parameters: { layout: 'padded' },
  decorators: [
    // the theme class scopes the kit's typography, as an app root would
    (Story: ComponentType) => (
      <div className="uk-theme">
        <Story />
      </div>
    ),
  ],
};

export default preview;
