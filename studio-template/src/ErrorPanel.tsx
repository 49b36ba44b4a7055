// What the canvas shows instead of a blank page when a component cannot be
// loaded or throws while rendering.
import { Component, type ErrorInfo, type ReactNode } from 'react';

export function describe(error: unknown): { message: string; stack: string } {
  if (error instanceof Error) {
    const stack = error.stack ?? '';
    // V8 stacks start with "Name: message"; the message is shown on its own
    const firstLine = `${error.name}: ${error.message}`;
    return { message: firstLine, stack: stack.startsWith(firstLine) ? stack.slice(firstLine.length).replace(/^\n/, '') : stack };
  }
  return { message: String(error), stack: '' };
}

export function ErrorPanel({ title, error, componentStack }: { title: string; error: unknown; componentStack?: string | null }): ReactNode {
  const { message, stack } = describe(error);
  return (
    <div className="studio-error" role="alert" data-testid="studio-error">
      <div className="studio-error-title" data-testid="studio-error-title">{title}</div>
      <div className="studio-error-message" data-testid="studio-error-message">
        {message}
      </div>
      {stack && <pre className="studio-error-stack">{stack}</pre>}
      {componentStack && <pre className="studio-error-stack" data-testid="studio-error-component-stack">{componentStack.replace(/^\n/, '')}</pre>}
    </div>
  );
}

interface BoundaryState {
  error: unknown;
  componentStack: string | null;
  caught: boolean;
}

/**
 * Catches render errors of the component under study. Remount it (change its
 * key) to try again; React Fast Refresh also remounts it after an edit.
 */
export class ErrorBoundary extends Component<{ children: ReactNode }, BoundaryState> {
  state: BoundaryState = { error: null, componentStack: null, caught: false };

  static getDerivedStateFromError(error: unknown): Partial<BoundaryState> {
    return { error, caught: true };
  }

  componentDidCatch(_error: unknown, info: ErrorInfo): void {
    this.setState({ componentStack: info.componentStack ?? null });
  }

  render(): ReactNode {
    if (this.state.caught) {
      return <ErrorPanel title="Render error" error={this.state.error} componentStack={this.state.componentStack} />;
    }
    return this.props.children;
  }
}
