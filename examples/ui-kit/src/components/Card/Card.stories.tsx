import { Button } from '../Button/Button';
import { Card } from './Card';

export default {
  title: 'Components/Card',
  component: Card,
  args: { title: 'Quarterly report', children: 'Revenue grew 12% over the last quarter.' },
};

export const Basic = {};

export const WithActions = {
  name: 'With actions',
  render: (args: { title: string; children: string }) => (
    <Card
      title={args.title}
      footer={
        <>
          <Button variant="secondary" label="Later" />
          <Button label="Open" />
        </>
      }
    >
      {args.children}
    </Card>
  ),
};
