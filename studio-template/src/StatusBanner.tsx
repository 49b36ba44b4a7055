// The sandbox's state as the backend reports it on the live connection.
import type { ReactNode } from 'react';
import type { ConnectionState } from './live';

export interface SandboxStatus {
  connection: ConnectionState;
  retryInMs: number | null;
  /** Lifecycle state from the last `status` (or `hello`) message: starting, running, restarting, failed... */
  status: string | null;
  /** Error or detail that came with it. */
  message: string | null;
}

export function StatusBanner({ sandboxId, state }: { sandboxId: string | null; state: SandboxStatus }): ReactNode {
  const { connection, retryInMs, status, message } = state;
  const tone = status === 'failed' || status === 'error' ? 'bad' : connection !== 'open' || status !== 'running' ? 'warn' : 'ok';
  return (
    <div
      className={`studio-banner studio-banner-${tone}`}
      role="status"
      data-testid="studio-status"
      data-status={status ?? ''}
      data-connection={connection}
    >
      {sandboxId && <span className="studio-banner-id">{sandboxId}</span>}
      <span data-testid="studio-status-text">{status ?? 'unknown'}</span>
      {message && <span data-testid="studio-status-message">{message}</span>}
      {connection !== 'open' && (
        <span className="studio-banner-connection">
          {connection === 'connecting'
            ? 'connecting…'
            : retryInMs !== null
              ? `disconnected, retrying in ${(retryInMs / 1000).toFixed(1)} s`
              : 'reconnecting…'}
        </span>
      )}
    </div>
  );
}
