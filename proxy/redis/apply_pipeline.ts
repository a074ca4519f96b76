// Applies the committed log to this replica's redis-server, in log order, and hands the
// replies of this replica's own requests back to the clients waiting for them. Runs on
// every replica, the leader included: the leader answers a client with its own backend's
// reply to the applied command.
//
// Nothing here waits between entries: each entry's commands are written to the backend
// connection as soon as the entry arrives (the connection is FIFO), so the backend works
// through a pipeline as deep as the log delivers.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';

import type { AppliedEntry, Replica } from '../../mu/replica.js';
import type { BackendChannel } from './backend_channel.js';
import { decodeLogCommand, LogCommandKind } from './log_command.js';
import { encodeCommand } from '../../adapters/redis/resp.js';

const multi = encodeCommand(['MULTI']);
const exec = encodeCommand(['EXEC']);

// A waiter gets the raw reply to its request (for a transaction, EXEC's reply), or an
// error when the backend failed before answering.
interface Waiter {
  resolve: (reply: Buffer) => void;
  reject: (error: Error) => void;
}

export interface ApplyPipelineEvents {
  // The backend failed while applying: this replica's state is no longer known to match
  // the log. The owner stops serving and resynchronises or reports.
  'backend-failed': [error: Error];
}

export class ApplyPipeline extends EventEmitter<ApplyPipelineEvents> {
  private readonly waiters = new Map<number, Waiter>();
  // Request ids start at a random multiple of 2^32: a restarted replica re-applies its
  // previous incarnation's entries while catching up, and their ids must not match the
  // new incarnation's waiters. (Ids stay below 2^53, exact as numbers.)
  private nextRequestId = crypto.randomInt(1, 2 ** 20) * 2 ** 32;
  private failed: Error | undefined;
  // The index of the last entry handed to the backend (its replies may still be coming).
  appliedIndex = 0;
  commandsApplied = 0;

  constructor(
    private readonly replica: Replica,
    private readonly channel: BackendChannel,
  ) {
    super();
    replica.on('applied', (entry) => this.apply(entry));
  }

  // A fresh id for a request this replica proposes; `expect` it before proposing.
  newRequestId(): number {
    return this.nextRequestId++;
  }

  expect(requestId: number): Promise<Buffer> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.waiters.set(requestId, { resolve, reject }));
  }

  // Called when the proposal of a request failed (it will never be applied): its waiter
  // is dropped so the caller can answer the client itself.
  forget(requestId: number): void {
    this.waiters.delete(requestId);
  }

  private apply(entry: AppliedEntry): void {
    this.appliedIndex = entry.index;
    for (const command of entry.commands) {
      const logCommand = decodeLogCommand(command.data);
      const own = logCommand.origin === this.replica.nodeId;
      // A barrier only proves leadership: its proposer's promise resolves after this
      // handler has handed everything before it to the backend (Replica emits 'applied'
      // synchronously, before any promise continuation runs).
      if (logCommand.kind === LogCommandKind.barrier) continue;
      const group =
        logCommand.kind === LogCommandKind.transaction ? [multi, ...logCommand.parts, exec] : logCommand.parts;
      this.commandsApplied += logCommand.parts.length;
      const sent = this.channel.send(logCommand.db, group);
      const waiter = own ? this.waiters.get(logCommand.requestId) : undefined;
      if (waiter !== undefined) this.waiters.delete(logCommand.requestId);
      sent.then(
        (replies) => waiter?.resolve(replies[replies.length - 1] as Buffer),
        (error: Error) => {
          waiter?.reject(error);
          this.fail(error);
        },
      );
    }
  }

  private fail(error: Error): void {
    if (this.failed !== undefined) return;
    this.failed = error;
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
    this.emit('backend-failed', error);
  }

  get backendFailed(): Error | undefined {
    return this.failed;
  }
}
