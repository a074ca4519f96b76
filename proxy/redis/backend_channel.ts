// The one pipelined connection from a replica's proxy to its local redis-server, shared
// by the apply stream and the reads, in one FIFO order. Because Redis executes one
// connection's commands in order, a read sent after an applied write sees it; and a
// group sent in one call (a transaction) is never interleaved with anything else.
//
// The connection's selected database is part of that order: the channel remembers the
// database of the last command it queued and puts a SELECT in front of a command for
// another one (its reply is dropped).
import { encodeCommand } from '../../adapters/redis/resp.js';
import type { RedisBackend } from '../../adapters/redis/redis_backend.js';

const selectCommands = new Map<number, Buffer>();
function selectCommand(db: number): Buffer {
  let command = selectCommands.get(db);
  if (command === undefined) {
    command = encodeCommand(['SELECT', String(db)]);
    selectCommands.set(db, command);
  }
  return command;
}

export class BackendChannel {
  private queuedDb = 0;

  constructor(private current: RedisBackend) {}

  get backend(): RedisBackend {
    return this.current;
  }

  // A new connection (to a backend that came back after a state transfer); the old one is
  // the caller's to close.
  replace(backend: RedisBackend): void {
    this.current = backend;
    this.queuedDb = 0;
  }

  // Sends the encoded commands, in database `db`, as one uninterrupted group; resolves
  // with their raw replies (the SELECT's, if one was needed, left out).
  async send(db: number, commands: Buffer[]): Promise<Buffer[]> {
    if (db === this.queuedDb) return this.current.sendMany(commands);
    this.queuedDb = db;
    const replies = await this.current.sendMany([selectCommand(db), ...commands]);
    return replies.slice(1);
  }

  get pending(): number {
    return this.current.pending;
  }
}
