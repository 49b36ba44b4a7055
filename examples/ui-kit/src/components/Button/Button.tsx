import type { ReactNode } from 'react';

export interface ButtonProps {
  /** Text shown when no children are given. */
  label?: string;
  variant?: 'primary' | 'secondary' | 'danger';
  size?: 'sm' | 'md' | 'lg';
  disabled?: boolean;
  onClick?: () => void;
  children?: ReactNode;
}

export function Button({ label = 'Click me', variant = 'primary', size = 'md', disabled = false, onClick, children }: ButtonProps) {
  return (
    <button
      type="button"
      className={`uk-button uk-button--${variant} uk-button--${size}`}
      disabled={disabled}
      onClick={onClick}
    >
      {children ?? label}
    </button>
  );
}
