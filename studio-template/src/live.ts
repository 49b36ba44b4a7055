// The page's connection to its sandbox's event stream (wsUrl). Messages are
// `{type, seq, ts, sandbox_id, payload}`. The connection comes back by itself
// with exponential backoff and asks for what it missed with `?since=<seq>`.

export interface LiveMessage {
  type: string;
  seq?: number;
  ts?: string;
  sandbox_id?: string;
  payload?: Record<string, unknown>;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting';

export interface LiveOptions {
  url: string;
  onMessage: (message: LiveMessage) => void;
  onState: (state: ConnectionState, retryInMs: number | null) => void;
  /** First retry delay; doubled per failed attempt up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** A connection open this long counts as healthy: the next drop retries fast again. */
  stableMs?: number;
}

/** The event stream's ws(s):// URL: `url` itself, or a path (the renderer proxy's) on the page's origin. */
export function eventStreamUrl(url: string, page: string): string {
  const resolved = new URL(url, page);
  if (resolved.protocol === 'http:') resolved.protocol = 'ws:';
  else if (resolved.protocol === 'https:') resolved.protocol = 'wss:';
  return resolved.toString();
}

/** `url` with `since=<seq>` set, so the server replays the events after seq. */
export function resumeUrl(url: string, since: number | null): string {
  if (since === null) return url;
  const parsed = new URL(url);
  parsed.searchParams.set('since', String(since));
  return parsed.toString();
}

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter so clients do not stampede. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class LiveConnection {
  private socket: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private openedAt = 0;
  private stopped = false;
  /** Highest sequence number seen, the resume point after a reconnect. */
  lastSeq: number | null = null;

  constructor(private readonly options: LiveOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, 'page closed');
  }

  /** Sends a message if connected; returns false when it could not be sent. */
  send(type: string, payload: Record<string, unknown>): boolean {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ type, payload }));
    return true;
  }

  private connect(): void {
    this.options.onState(this.attempt === 0 && this.lastSeq === null ? 'connecting' : 'reconnecting', null);
    let socket: WebSocket;
    try {
      socket = new WebSocket(resumeUrl(this.options.url, this.lastSeq));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.openedAt = Date.now();
      this.options.onState('open', null);
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.openedAt && Date.now() - this.openedAt >= (this.options.stableMs ?? 5000)) this.attempt = 0;
      this.openedAt = 0;
      this.scheduleReconnect();
    };
    // an error is always followed by close, which does the reconnecting
    socket.onerror = () => undefined;
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') return;
    let message: LiveMessage;
    try {
      message = JSON.parse(data) as LiveMessage;
    } catch {
      return;
    }
    if (!message || typeof message.type !== 'string') return;
    if (typeof message.seq === 'number' && (this.lastSeq === null || message.seq > this.lastSeq)) this.lastSeq = message.seq;
    if (message.type === 'ping') {
      this.send('pong', message.payload ?? {});
      return;
    }
    this.options.onMessage(message);
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.options.initialDelayMs ?? 250, this.options.maxDelayMs ?? 10000);
    this.attempt += 1;
    this.options.onState('reconnecting', delay);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}
