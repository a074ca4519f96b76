// One pipelined connection to a redis-server: commands go out in call order, replies are
// matched first-in first-out and come back as raw RESP bytes (see resp.ts). Every send
// settles: when the connection drops or the backend sends malformed bytes, every
// outstanding and every later send rejects with a BackendError and 'close' is emitted once.
import { BackendError, openSocket, PipelinedConnection, type BackendErrorCode, type BackendEvents, type ConnectOptions, endpointOf } from '../pipelined_connection.js';
import { describeEndpoint } from '../endpoint.js';
import { ReplyFramer } from './resp.js';

export { BackendError, type BackendErrorCode };

export type RedisBackendOptions = ConnectOptions & {
  /** A label for error messages (default `redis <host>:<port>` or `redis unix:<path>`); nothing is sent to the backend. */
  name?: string;
};

export type RedisBackendEvents = BackendEvents;

export class RedisBackend extends PipelinedConnection {
  /** Connects; rejects with BackendError('CONNECT') when the backend cannot be reached in time. */
  static async connect(options: RedisBackendOptions): Promise<RedisBackend> {
    const label = options.name ?? `redis ${describeEndpoint(endpointOf(options))}`;
    return new RedisBackend(await openSocket(options, label), label, new ReplyFramer());
  }
}
