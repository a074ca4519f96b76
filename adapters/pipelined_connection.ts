// One pipelined connection to a backend server: requests go out in call order, replies
// are matched first-in first-out and come back as raw bytes, framed by a protocol's
// framer (RESP for redis-server, the text protocol for memcached). Every send settles:
// when the connection drops or the backend sends malformed bytes, every outstanding and
// every later send rejects with a BackendError and 'close' is emitted once.
import { EventEmitter } from 'node:events';
import net from 'node:net';

import { connectOptionsOf, type Endpoint } from './endpoint.js';

export type BackendErrorCode = 'CLOSED' | 'CONNECT' | 'PROTOCOL';

export class BackendError extends Error {
  readonly code: BackendErrorCode;
  constructor(code: BackendErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BackendError';
    this.code = code;
  }
}

// Splits a connection's bytes into whole replies; throws on malformed bytes (and on every
// push after that).
export interface ReplySplitter {
  push(chunk: Buffer): Buffer[];
}

/** A TCP port (on 127.0.0.1 unless `host` says otherwise) or a Unix socket `path`. */
export type ConnectOptions = ({ host?: string; port: number; path?: undefined } | { path: string; host?: undefined; port?: undefined }) & {
  /** Default 5000. */
  connectTimeoutMs?: number;
};

/** The endpoint ConnectOptions name. */
export function endpointOf(options: ConnectOptions): Endpoint {
  return options.path !== undefined ? { path: options.path } : { host: options.host ?? '127.0.0.1', port: options.port };
}

export interface BackendEvents {
  /** Emitted once: with the error when the connection failed, with none after close(). */
  close: [error?: Error];
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
// After close() ends the socket, how long to wait for the backend to close its side.
const CLOSE_GRACE_MS = 1000;

// A first-in first-out queue on a growable ring: O(1) push and shift, no Array#shift.
class Fifo<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(16);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count === this.items.length) {
      const grown = new Array<T | undefined>(this.items.length * 2);
      for (let i = 0; i < this.count; i++) grown[i] = this.items[(this.head + i) & (this.items.length - 1)];
      this.items = grown;
      this.head = 0;
    }
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count++;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count--;
    return item;
  }

  clear(): T[] {
    const all: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) all.push(item);
    return all;
  }
}

/** A connected socket; rejects with BackendError('CONNECT') when the backend cannot be reached in time. */
export function openSocket(options: ConnectOptions, label: string): Promise<net.Socket> {
  const endpoint = endpointOf(options);
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    try {
      socket = net.connect(connectOptionsOf(endpoint));
    } catch (error) {
      reject(new BackendError('CONNECT', `${label}: cannot connect: ${(error as Error).message}`, { cause: error }));
      return;
    }
    const onError = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new BackendError('CONNECT', `${label}: cannot connect: ${error.message}`, { cause: error }));
    };
    const timer = setTimeout(() => {
      socket.removeListener('error', onError);
      socket.on('error', () => {}); // the destroy below may still report one
      socket.destroy();
      reject(new BackendError('CONNECT', `${label}: connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      if (endpoint.path === undefined) socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

type Waiter =
  | { many: false; resolve: (reply: Buffer) => void; reject: (error: Error) => void }
  | { many: true; count: number; replies: Buffer[]; resolve: (replies: Buffer[]) => void; reject: (error: Error) => void };

export class PipelinedConnection extends EventEmitter<BackendEvents> {
  /** A connection over an open socket whose replies `framer` splits. */
  static over(socket: net.Socket, label: string, framer: ReplySplitter): PipelinedConnection {
    return new PipelinedConnection(socket, label, framer);
  }

  private readonly socket: net.Socket;
  private readonly label: string;
  private readonly waiters = new Fifo<Waiter>();
  // Commands accepted and not yet answered (those held back by backpressure included).
  private outstanding = 0;
  // Held back while the socket's buffer is over its high-water mark; written on 'drain'.
  private readonly outbox = new Fifo<Buffer>();
  private blocked = false;
  // The socket is corked from the first write of an event-loop turn until the end of that
  // turn, so the commands of one turn leave in one writev.
  private corked = false;
  private isClosed = false;
  // Why the backend closed, for the errors of later sends.
  private closeReason: string | undefined;
  private failure: Error | undefined;
  private socketError: Error | undefined;
  private readonly socketClosed: Promise<void>;

  protected constructor(
    socket: net.Socket,
    label: string,
    private readonly framer: ReplySplitter,
  ) {
    super();
    this.socket = socket;
    this.label = label;
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (error) => {
      this.socketError ??= error;
    });
    socket.on('end', () => this.fail('CLOSED', 'the backend closed the connection'));
    socket.on('close', () => {
      const error = this.socketError;
      this.fail('CLOSED', error === undefined ? 'connection closed' : `connection lost: ${error.message}`, error);
    });
  }

  /** Commands sent and not yet answered. */
  get pending(): number {
    return this.outstanding;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends one encoded request; resolves with its raw reply. */
  send(command: Buffer): Promise<Buffer> {
    if (this.isClosed) return Promise.reject(this.closedError());
    return new Promise<Buffer>((resolve, reject) => {
      this.waiters.push({ many: false, resolve, reject });
      this.outstanding++;
      this.write(command);
    });
  }

  /** Sends encoded requests in one socket write; resolves with their raw replies, in order. */
  sendMany(commands: Buffer[]): Promise<Buffer[]> {
    if (this.isClosed) return Promise.reject(this.closedError());
    const count = commands.length;
    if (count === 0) return Promise.resolve([]);
    return new Promise<Buffer[]>((resolve, reject) => {
      this.waiters.push({ many: true, count, replies: [], resolve, reject });
      this.outstanding += count;
      this.write(count === 1 ? commands[0]! : Buffer.concat(commands));
    });
  }

  /**
   * Ends the connection (no QUIT). Outstanding sends reject with CLOSED; whether the backend
   * applied them is unknown. Resolves once the socket is closed.
   */
  close(): Promise<void> {
    if (!this.isClosed) {
      this.isClosed = true;
      this.closeReason = 'closed by close()';
      this.failure = new BackendError('CLOSED', `${this.label}: ${this.closeReason}`);
      this.rejectAll(this.failure);
      if (this.socket.writableLength > 0) {
        // Unsent commands would only delay the end; nobody waits for their replies.
        this.socket.destroy();
      } else {
        this.socket.end();
        const timer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
        void this.socketClosed.then(() => clearTimeout(timer));
      }
      this.emit('close');
    }
    return this.socketClosed;
  }

  private write(buf: Buffer): void {
    if (this.blocked) {
      this.outbox.push(buf);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    if (!this.socket.write(buf)) this.blocked = true;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };

  private onDrain(): void {
    this.blocked = false;
    if (this.isClosed || this.outbox.length === 0) return;
    this.socket.cork();
    for (let buf = this.outbox.shift(); buf !== undefined; buf = this.outbox.shift()) {
      if (!this.socket.write(buf)) {
        this.blocked = true;
        break;
      }
    }
    this.socket.uncork();
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    let replies: Buffer[];
    try {
      replies = this.framer.push(chunk);
    } catch (error) {
      this.fail('PROTOCOL', `malformed reply: ${(error as Error).message}`, error);
      return;
    }
    for (const reply of replies) {
      const waiter = this.waiters.peek();
      if (waiter === undefined) {
        this.fail('PROTOCOL', `a reply arrived with no command outstanding: ${JSON.stringify(reply.toString('latin1', 0, 40))}`);
        return;
      }
      this.outstanding--;
      if (!waiter.many) {
        this.waiters.shift();
        waiter.resolve(reply);
      } else {
        waiter.replies.push(reply);
        if (waiter.replies.length === waiter.count) {
          this.waiters.shift();
          waiter.resolve(waiter.replies);
        }
      }
    }
  }

  private fail(code: BackendErrorCode, message: string, cause?: unknown): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const error = new BackendError(code, `${this.label}: ${message}`, cause === undefined ? undefined : { cause });
    this.closeReason = message;
    this.failure = error;
    this.rejectAll(error);
    this.socket.destroy();
    this.emit('close', error);
  }

  private rejectAll(error: Error): void {
    this.outstanding = 0;
    this.outbox.clear();
    for (const waiter of this.waiters.clear()) waiter.reject(error);
  }

  private closedError(): BackendError {
    return new BackendError('CLOSED', `${this.label}: the connection is closed (${this.closeReason ?? 'closed'})`, { cause: this.failure });
  }
}
