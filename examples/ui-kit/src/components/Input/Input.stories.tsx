import { Input } from './Input';

export default {
  title: 'Components/Input',
  component: Input,
  args: { label: 'Email', placeholder: 'you@example.com', type: 'email' },
};

export const Empty = {};

export const Filled = {
  args: { defaultValue: 'ada@example.com' },
};

export const WithError = {
  name: 'With error',
  args: { defaultValue: 'ada@', error: 'Enter a complete email address.' },
};
