// The proposal side of one replica's log, shared by its front ends (Redis, memcached):
// every proposal goes through here, so one write barrier can hold them all, linearizable
// reads share barrier entries, and a command larger than a log entry is split into
// chunks (log_command.ts).
import type { Replica } from '../../mu/replica.js';
import type { ApplyPipeline } from './apply_pipeline.js';
import { encodeLogCommand, LogCommandKind, splitLogCommand } from './log_command.js';

export interface ProposerCounters {
  barriers: number;
  chunkedCommands: number;
}

export class Proposer {
  readonly counters: ProposerCounters = { barriers: 0, chunkedCommands: 0 };
  // The write barrier (exclusive): proposals wait here while a task holds it. Undefined
  // when open.
  private gateQueue: Array<() => void> | undefined;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  private currentBarrier: { requestId: number; failure: unknown; refusal: () => unknown } | undefined;
  private writesSinceBarrier = false;
  // The request id of this replica's latest proposal.
  lastProposedRequestId: number | undefined;

  constructor(
    readonly replica: Replica,
    readonly pipeline: ApplyPipeline,
  ) {}

  // Proposes `command` (request `requestId`), after the write barrier if it is closed.
  submit(requestId: number, command: Buffer): Promise<number> {
    if (this.gateQueue === undefined) {
      this.lastProposedRequestId = requestId;
      return this.proposeNow(requestId, command);
    }
    return new Promise((resolve, reject) => {
      this.gateQueue?.push(() => {
        this.lastProposedRequestId = requestId;
        this.proposeNow(requestId, command).then(resolve, reject);
      });
    });
  }

  // Proposes at once, past the write barrier (for the task that holds it). One log
  // command, split over several entries when it is larger than one; resolves with the
  // index of its last piece, or rejects when any piece was not committed (then the command
  // never takes effect anywhere).
  proposeNow(requestId: number, command: Buffer): Promise<number> {
    const limit = this.replica.maxCommandBytes;
    if (command.length <= limit) return this.replica.propose(command);
    this.counters.chunkedCommands++;
    return this.replica.propose(splitLogCommand(command, this.replica.nodeId, requestId, limit)).then((indices) => indices[indices.length - 1] as number);
  }

  // Runs `task` with the write barrier closed (other proposals queue in `submit` until
  // the task calls openGate, or ends); one task at a time, in call order.
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.exclusiveChain.then(async () => {
      this.gateQueue = [];
      try {
        return await task();
      } finally {
        this.openGate();
      }
    });
    this.exclusiveChain = run.catch(() => undefined);
    return run;
  }

  openGate(): void {
    const queue = this.gateQueue;
    this.gateQueue = undefined;
    for (const propose of queue ?? []) propose();
  }

  // A linearizable read's proof that this replica leads, and its place in the log: a
  // barrier entry proposed now. Reads share one while this replica proposes no write in
  // between (a read must come after the writes its connection sent before it, so a
  // barrier proposed before them will not do); at most one per event-loop turn.
  barrier(): { requestId: number; refusal: () => unknown } {
    if (this.currentBarrier === undefined || this.writesSinceBarrier) {
      this.counters.barriers++;
      const requestId = this.pipeline.newRequestId();
      const command = encodeLogCommand({ kind: LogCommandKind.barrier, origin: this.replica.nodeId, requestId, db: 0, parts: [] });
      const barrier = { requestId, failure: undefined as unknown, refusal: () => barrier.failure };
      this.submit(requestId, command).catch((error: unknown) => {
        barrier.failure = error;
        this.pipeline.forget(requestId);
      });
      this.currentBarrier = barrier;
      this.writesSinceBarrier = false;
      setImmediate(() => {
        if (this.currentBarrier === barrier) this.currentBarrier = undefined;
      });
    }
    return this.currentBarrier;
  }

  // A write was proposed: the next linearizable read needs a barrier of its own.
  noteWrite(): void {
    this.writesSinceBarrier = true;
  }
}
