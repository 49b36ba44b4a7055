import type { ReactNode } from 'react';

export interface ModalProps {
  open: boolean;
  title: string;
  children?: ReactNode;
  onClose?: () => void;
}

export function Modal({ open, title, children, onClose }: ModalProps) {
  if (!open) return null;
  return (
    <div className="uk-modal-backdrop">
      <div className="uk-modal" role="dialog" aria-modal="true" aria-label={title}>
        <div className="uk-modal__header">
          <h2 className="uk-modal__title">{title}</h2>
          {onClose && (
            <button type="button" className="uk-modal__close" aria-label="Close" onClick={onClose}>
              ×
            </button>
          )}
        </div>
        <div className="uk-modal__body">{children}</div>
      </div>
    </div>
  );
}
