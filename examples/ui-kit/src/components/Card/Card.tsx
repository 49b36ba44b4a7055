import type { ReactNode } from 'react';

export interface CardProps {
  title: string;
  children?: ReactNode;
  footer?: ReactNode;
}

export function Card({ title, children, footer }: CardProps) {
  return (
    <section className="uk-card">
      <h3 className="uk-card__title">{title}</h3>
      <div className="uk-card__body">{children}</div>
      {footer && <div className="uk-card__footer">{footer}</div>}
    </section>
  );
}
