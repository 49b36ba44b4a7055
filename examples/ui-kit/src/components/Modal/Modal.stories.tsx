import { useState, type ComponentType } from 'react';
import { Button } from '../Button/Button';
import { Modal } from './Modal';

export default {
  title: 'Components/Modal',
  component: Modal,
  args: { open: true, title: 'Invite people', children: 'They will get an email with a link to this workspace.' },
  decorators: [
    // the modal positions itself in its frame: give it one
    (Story: ComponentType) => (
      <div style={{ position: 'relative', minHeight: 260 }}>
        <Story />
      </div>
    ),
  ],
};

export const Open = {};

export const WithTrigger = {
  name: 'With trigger',
  render: (args: { title: string; children: string }) => {
    const [open, setOpen] = useState(false);
    return (
      <>
        <Button label="Open dialog" onClick={() => setOpen(true)} />
        <Modal open={open} title={args.title} onClose={() => setOpen(false)}>
          {args.children}
        </Modal>
      </>
    );
  },
};
