// One pipelined connection to a redis-server: commands go out in call order, replies are
// matched first-in first-out and come back as raw RESP bytes (see resp.ts). Every send
// settles: when the connection drops or the backend sends malformed bytes, every
// outstanding and every later send rejects with a BackendError and 'close' is emitted once.
import { BackendError, openSocket, PipelinedConnection, type BackendErrorCode, type BackendEvents, type ConnectOptions } from '../pipelined_connection.js';
import { ReplyFramer } from './resp.js';

export { BackendError, type BackendErrorCode };

export interface RedisBackendOptions extends ConnectOptions {
  /** A label for error messages (default `redis <host>:<port>`); nothing is sent to the backend. */
  name?: string;
}

export type RedisBackendEvents = BackendEvents;

export class RedisBackend extends PipelinedConnection {
  /** Connects; rejects with BackendError('CONNECT') when the backend cannot be reached in time. */
  static async connect(options: RedisBackendOptions): Promise<RedisBackend> {
    const label = options.name ?? `redis ${options.host ?? '127.0.0.1'}:${options.port}`;
    return new RedisBackend(await openSocket(options, label), label, new ReplyFramer());
  }
}
