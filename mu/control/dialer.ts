// Keeps one outgoing connection to one peer: dials, hands the socket to a PeerSession, and
// redials with exponential backoff whenever the connection ends (the peer restarted, refused
// us, or was not up yet). A new connection after a restart is how we learn the new card.
import net from 'node:net';

import type { PeerAddress } from './options.js';

export interface DialerOptions {
  peer: PeerAddress;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  /** Time allowed for the TCP connect itself; the session then has its own handshake timeout. */
  connectTimeoutMs: number;
  log: (line: string) => void;
  /** Called with the connected socket; the dialer only watches it for 'close'. */
  connected(socket: net.Socket): void;
}

export class Dialer {
  private socket: net.Socket | undefined;
  private redialTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private stopped = false;
  // Log an unreachable peer once per outage, not on every retry.
  private reportedUnreachable = false;

  constructor(private readonly options: DialerOptions) {
    this.delayMs = options.reconnectDelayMs;
  }

  start(): void {
    this.dial();
  }

  /** The connection reached an authenticated peer: the next outage starts from the short delay. */
  succeeded(): void {
    this.delayMs = this.options.reconnectDelayMs;
    this.reportedUnreachable = false;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.redialTimer);
    clearTimeout(this.connectTimer);
    this.socket?.destroy();
    this.socket = undefined;
  }

  private dial(): void {
    if (this.stopped) return;
    const { peer } = this.options;
    const socket = net.connect({ host: peer.host, port: peer.port });
    this.socket = socket;
    let connected = false;
    this.connectTimer = setTimeout(() => socket.destroy(new Error('connect timed out')), this.options.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(this.connectTimer);
      connected = true;
      this.options.connected(socket);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (connected || this.reportedUnreachable || this.stopped) return;
      this.reportedUnreachable = true;
      const why = error.code ?? error.message;
      this.options.log(`cannot reach replica ${peer.id} at ${peer.host}:${peer.port} (${why}); retrying`);
    });
    socket.once('close', () => {
      clearTimeout(this.connectTimer);
      if (this.socket === socket) this.socket = undefined;
      this.scheduleRedial();
    });
  }

  private scheduleRedial(): void {
    if (this.stopped) return;
    const delayMs = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxReconnectDelayMs);
    this.redialTimer = setTimeout(() => this.dial(), delayMs);
  }
}
