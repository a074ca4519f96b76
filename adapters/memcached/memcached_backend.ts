// One pipelined connection to a memcached (text protocol): requests go out in call order,
// each with the shape of the reply it expects; replies come back as raw bytes, matched
// first-in first-out. Every send settles (pipelined_connection.ts).
import { openSocket, PipelinedConnection, type ConnectOptions, endpointOf } from '../pipelined_connection.js';
import { describeEndpoint } from '../endpoint.js';
import { MemcachedReplyFramer, type ReplyShape } from './memcached_protocol.js';

export type MemcachedBackendOptions = ConnectOptions & {
  /** A label for error messages (default `memcached <host>:<port>` or `memcached unix:<path>`). */
  name?: string;
};

export class MemcachedBackend {
  private constructor(
    private readonly connection: PipelinedConnection,
    private readonly framer: MemcachedReplyFramer,
  ) {}

  static async connect(options: MemcachedBackendOptions): Promise<MemcachedBackend> {
    const label = options.name ?? `memcached ${describeEndpoint(endpointOf(options))}`;
    const framer = new MemcachedReplyFramer();
    return new MemcachedBackend(PipelinedConnection.over(await openSocket(options, label), label, framer), framer);
  }

  /** Sends one request (its line, and its data block for a storage command). */
  send(request: Buffer, shape: ReplyShape): Promise<Buffer> {
    if (!this.connection.closed) this.framer.expect(shape);
    return this.connection.send(request);
  }

  /** Sends requests in one socket write; resolves with their raw replies, in order. */
  sendMany(requests: ReadonlyArray<{ request: Buffer; shape: ReplyShape }>): Promise<Buffer[]> {
    if (!this.connection.closed) for (const { shape } of requests) this.framer.expect(shape);
    return this.connection.sendMany(requests.map(({ request }) => request));
  }

  get pending(): number {
    return this.connection.pending;
  }

  get closed(): boolean {
    return this.connection.closed;
  }

  onClose(listener: (error?: Error) => void): void {
    this.connection.on('close', listener);
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
