import { Button } from './Button';

const meta = {
  title: 'Components/Button',
  component: Button,
  args: { size: 'md' },
};
export default meta;

export const Primary = {
  args: { variant: 'primary', label: 'Save changes' },
};

export const Secondary = {
  args: { ...Primary.args, variant: 'secondary', label: 'Cancel' },
};

export const LargeDanger = {
  name: 'Large danger',
  args: { variant: 'danger', size: 'lg', label: 'Delete project' },
};
