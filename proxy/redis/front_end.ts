// The Redis front end of one replica: the RESP listener and what its sessions share (the
// replica, the apply pipeline, the backend channel, the command table, the options and
// counters), and the answers that depend on the cluster's state: who leads, and what a
// client should do when this replica cannot take its request.
import net from 'node:net';

import { ProposalError, type Replica } from '../../mu/replica.js';
import type { ApplyPipeline } from './apply_pipeline.js';
import type { BackendChannel } from './backend_channel.js';
import type { CommandTable } from './command_table.js';
import type { AccessControl } from './acl.js';
import type { KeyWatchRegistry } from './key_watch.js';
import type { PeerAuthenticator } from './peer_auth.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { effectOf } from './effects.js';
import { encodeLogCommand, LogCommandKind, splitLogCommand } from './log_command.js';
import * as reply from './replies.js';
import { RedisSession } from './session.js';

export type ReadMode = 'linearizable' | 'leader' | 'any';

export interface FrontEndOptions {
  host: string;
  port: number;
  requirepass?: string;
  readMode: ReadMode;
  // What a follower does with a request only the leader can serve: hand the connection to
  // the leader's proxy ("forward"), or refuse it with an error naming the leader ("redirect").
  followerRequests: 'forward' | 'redirect';
  maxClients: number;
  maxRequestBytes: number; // one request, as received (Redis: proto-max-bulk-len 512 MB)
  maxPipeline: number; // requests read but not yet answered, per client, before reading pauses
  maxOutputBytes: number; // replies queued in the socket, per client, before it is closed
  idleTimeoutMs: number; // 0: never
}

export const frontEndDefaults: Omit<FrontEndOptions, 'port'> = {
  host: '127.0.0.1',
  readMode: 'linearizable',
  followerRequests: 'forward',
  maxClients: 10000,
  maxRequestBytes: 512 * 1024 * 1024,
  maxPipeline: 10000,
  maxOutputBytes: 256 * 1024 * 1024,
  idleTimeoutMs: 0,
};

export interface FrontEndCounters {
  connections: number;
  rejectedConnections: number;
  requests: number;
  writes: number;
  reads: number;
  barriers: number;
  replyBytes: number;
  protocolErrors: number;
  authFailures: number;
  outputLimitCloses: number;
  subscriptionFailures: number;
  forwardedClients: number;
  snapshotsServed: number;
  chunkedCommands: number;
}

export interface PeerAddressBook {
  // Where replica `id`'s Redis front end takes clients, when known (for error messages
  // and for handing a client to the leader).
  redisAddress(id: number): { host: string; port: number } | undefined;
}

export class FrontEnd {
  readonly counters: FrontEndCounters = {
    connections: 0,
    rejectedConnections: 0,
    requests: 0,
    writes: 0,
    reads: 0,
    barriers: 0,
    replyBytes: 0,
    protocolErrors: 0,
    authFailures: 0,
    outputLimitCloses: 0,
    subscriptionFailures: 0,
    forwardedClients: 0,
    snapshotsServed: 0,
    chunkedCommands: 0,
  };
  // Set by the replica: this replica's state transfer, for MU STATUS; and its log.
  resyncReport: (() => Record<string, unknown>) | undefined;
  log: (line: string) => void = () => {};
  private readonly sessions = new Set<RedisSession>();
  // Called on every change of role: clients waiting in a blocking pop wake up (a deposed
  // leader's waiting clients are told to go to the new one), subscribers of a deposed
  // leader are let go.
  readonly roleListeners = new Set<() => void>();
  private server: net.Server | undefined;
  private clientIds = 0;
  // The write barrier of nondeterministic writes (effects.ts): proposals wait here while
  // one runs. Undefined when open.
  private gateQueue: Array<() => void> | undefined;
  private effectsChain: Promise<unknown> = Promise.resolve();
  private lastProposedRequestId: number | undefined;
  private currentBarrier: { requestId: number; failure: unknown; refusal: () => unknown } | undefined;
  private writesSinceBarrier = false;

  constructor(
    readonly options: FrontEndOptions,
    readonly replica: Replica,
    readonly pipeline: ApplyPipeline,
    readonly channel: BackendChannel,
    readonly keyWatches: KeyWatchRegistry,
    readonly table: CommandTable,
    readonly databases: number,
    readonly backendVersion: string,
    readonly backendAddress: { host: string; port: number },
    private readonly peers: PeerAddressBook,
    readonly access: AccessControl,
    readonly peerAuth: PeerAuthenticator,
  ) {
    replica.on('role', () => {
      for (const listener of [...this.roleListeners]) listener();
    });
  }

  listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new Error(`cannot listen on ${this.options.host}:${this.options.port}: ${error.code ?? error.message}`)),
      );
      server.listen(this.options.port, this.options.host, () => resolve());
    });
  }

  get port(): number {
    const address = this.server?.address();
    return address !== null && typeof address === 'object' ? address.port : this.options.port;
  }

  private accept(socket: net.Socket): void {
    if (this.sessions.size >= this.options.maxClients) {
      this.counters.rejectedConnections++;
      socket.end(reply.errorReply('ERR max number of clients reached'));
      return;
    }
    this.counters.connections++;
    this.sessions.add(new RedisSession(socket, this));
  }

  nextClientId(): number {
    return ++this.clientIds;
  }

  sessionClosed(session: RedisSession): void {
    this.sessions.delete(session);
  }

  get clients(): number {
    return this.sessions.size;
  }

  // Why this replica cannot take a write now, as the error reply; undefined when it can.
  writeRefusal(): Buffer | undefined {
    if (this.pipeline.backendFailed !== undefined) {
      return reply.errorReply('MASTERDOWN mu-proxy: this replica is getting back in step (its backend lost the state, or it fell behind); it serves nothing until then');
    }
    if (this.replica.isLeader) return undefined;
    return this.notLeaderReply();
  }

  readRefusal(): Buffer {
    return this.notLeaderReply();
  }

  private notLeaderReply(): Buffer {
    const leader = this.replica.role.leaderId;
    if (leader === null || leader === this.replica.nodeId) {
      return reply.errorReply('CLUSTERDOWN mu-proxy: no leader at the moment; retry shortly');
    }
    const address = this.peers.redisAddress(leader);
    return reply.errorReply(
      `READONLY mu-proxy: this replica does not lead; the leader is replica ${leader}${address === undefined ? '' : ` at ${address.host}:${address.port}`}`,
    );
  }

  clientAddressOf(id: number): { host: string; port: number } | undefined {
    return this.peers.redisAddress(id);
  }

  proposalErrorReply(error: unknown): Buffer {
    if (!(error instanceof ProposalError)) return reply.errorReply(`ERR mu-proxy: ${String(error)}`);
    switch (error.code) {
      case 'NOT_LEADER':
        return this.notLeaderReply();
      case 'LOST':
        return reply.errorReply('TRYAGAIN mu-proxy: leadership changed while the command was in flight; it was not applied');
      case 'BUSY':
        return reply.errorReply('TRYAGAIN mu-proxy: too many commands waiting to be replicated');
      case 'TOO_LARGE':
        return reply.errorReply(`ERR mu-proxy: ${error.message}`);
      default:
        return reply.errorReply(`MASTERDOWN mu-proxy: ${error.message}`);
    }
  }

  // Every proposal of this front end goes through here, so the write barrier can hold it.
  submit(requestId: number, command: Buffer): Promise<number> {
    if (this.gateQueue === undefined) {
      this.lastProposedRequestId = requestId;
      return this.propose(requestId, command);
    }
    return new Promise((resolve, reject) => {
      this.gateQueue?.push(() => {
        this.lastProposedRequestId = requestId;
        this.propose(requestId, command).then(resolve, reject);
      });
    });
  }

  // One log command, split over several entries when it is larger than one
  // (log_command.ts: chunks); resolves with the index of its last piece, or rejects when
  // any piece was not committed (then the command never takes effect anywhere).
  private propose(requestId: number, command: Buffer): Promise<number> {
    const limit = this.replica.maxCommandBytes;
    if (command.length <= limit) return this.replica.propose(command);
    this.counters.chunkedCommands++;
    return this.replica.propose(splitLogCommand(command, this.replica.nodeId, requestId, limit)).then((indices) => indices[indices.length - 1] as number);
  }

  // Runs a nondeterministic write on this replica's backend and replicates its effect
  // (effects.ts); resolves with the client's reply, once the effect is committed.
  runWithEffects(argv: Buffer[], db: number): Promise<Buffer> {
    return this.exclusive(async () => {
      // Everything proposed before must have reached the backend first.
      const last = this.lastProposedRequestId;
      if (last !== undefined) await new Promise<void>((resolve) => this.pipeline.afterApplied(last, () => resolve()));
      if (!this.replica.isLeader) return this.notLeaderReply();
      const [reply] = await this.channel.send(db, [encodeCommand(argv)]);
      const effect = effectOf(argv, reply as Buffer);
      if (effect === null || effect === undefined) return reply as Buffer;
      const requestId = this.pipeline.newRequestId();
      const command = encodeLogCommand({ kind: LogCommandKind.commands, origin: this.replica.nodeId, requestId, db, parts: [encodeCommand(effect)] });
      this.lastProposedRequestId = requestId;
      const committed = this.propose(requestId, command);
      this.openGate(); // what waited is proposed after the effect
      try {
        await committed;
      } catch (error) {
        // The command ran here but its effect is not in the log: this backend has diverged.
        this.pipeline.diverged(`a nondeterministic write ran on this replica but was not replicated (${String(error)})`);
        return this.proposalErrorReply(error);
      }
      return reply as Buffer;
    });
  }

  // EXEC of a transaction whose connection WATCHed keys: proposed only if none of them was
  // written since. Under the write barrier: a barrier entry of its own is applied first
  // (then everything committed before it, a previous leader's entries included, has been
  // applied here and has touched the watched keys), `written()` is asked, and the
  // transaction is proposed before anything else of this replica's can be: no write can
  // come between the check and the transaction in the log. Resolves with EXEC's reply, or
  // a null array when a watched key was written.
  execWatched(parts: Buffer[], db: number, written: () => boolean): Promise<Buffer> {
    return this.exclusive(async () => {
      const barrierId = this.pipeline.newRequestId();
      const barrierApplied = new Promise<boolean>((resolve) => this.pipeline.afterApplied(barrierId, resolve));
      this.lastProposedRequestId = barrierId;
      this.counters.barriers++;
      try {
        await this.propose(barrierId, encodeLogCommand({ kind: LogCommandKind.barrier, origin: this.replica.nodeId, requestId: barrierId, db: 0, parts: [] }));
      } catch (error) {
        this.pipeline.forget(barrierId);
        return this.proposalErrorReply(error);
      }
      if (!(await barrierApplied) || !this.replica.isLeader) return this.notLeaderReply();
      if (written()) return reply.nilArray;
      const requestId = this.pipeline.newRequestId();
      const answered = this.pipeline.expect(requestId);
      this.lastProposedRequestId = requestId;
      const committed = this.propose(requestId, encodeLogCommand({ kind: LogCommandKind.transaction, origin: this.replica.nodeId, requestId, db, parts }));
      this.openGate();
      try {
        await committed;
      } catch (error) {
        this.pipeline.forget(requestId);
        return this.proposalErrorReply(error);
      }
      return answered.catch((error: Error) => reply.errorReply(`ERR mu-proxy: the local backend failed: ${error.message}`));
    });
  }

  // Runs `task` with the write barrier closed (proposals of this front end queue in
  // `submit` until the task opens it, or ends); one task at a time, in call order.
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.effectsChain.then(async () => {
      this.gateQueue = [];
      try {
        return await task();
      } finally {
        this.openGate();
      }
    });
    this.effectsChain = run.catch(() => undefined);
    return run;
  }

  private openGate(): void {
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

  // INFO's reply with a "# Mu" section added when the request asks for it (no section
  // named, or default, all, everything, mu). The backend answers an unknown section (mu)
  // with an empty bulk string.
  withMuInfo(argv: Buffer[], raw: Buffer): Buffer {
    const sections = argv.slice(1).map((arg) => arg.toString('latin1').toLowerCase());
    const wanted = sections.length === 0 || sections.some((section) => ['default', 'all', 'everything', 'mu'].includes(section));
    if (!wanted || raw[0] !== 0x24 /* $ */) return raw;
    const headerEnd = raw.indexOf('\r\n');
    const body = raw.subarray(headerEnd + 2, raw.length - 2).toString();
    const status = this.replica.status();
    const lines = [
      '# Mu',
      `mu_node_id:${this.replica.nodeId}`,
      `mu_role:${status.role}`,
      `mu_leader:${this.replica.role.leaderId ?? -1}`,
      `mu_proposal:${status.proposal}`,
      `mu_applied_index:${status.appliedIndex}`,
      `mu_backend_applied_index:${this.pipeline.appliedIndex}`,
      `mu_commands_applied:${this.pipeline.commandsApplied}`,
      `mu_backend_pending:${this.channel.pending}`,
      `mu_backend_failed:${this.pipeline.backendFailed === undefined ? 0 : 1}`,
      `mu_read_mode:${this.options.readMode}`,
      `mu_peers_alive:${status.peerAlive.map((alive) => (alive ? 1 : 0)).join(',')}`,
      `mu_propose_to_commit_p50_us:${status.proposeToCommit.p50Us.toFixed(1)}`,
      `mu_propose_to_commit_p99_us:${status.proposeToCommit.p99Us.toFixed(1)}`,
      `mu_clients:${this.clients}`,
      `mu_writes:${this.counters.writes}`,
      `mu_reads:${this.counters.reads}`,
      `mu_barriers:${this.counters.barriers}`,
    ];
    const text = `${body.length > 0 ? `${body}\r\n` : ''}${lines.join('\r\n')}\r\n`;
    return reply.bulk(text);
  }

  statusReport(): Record<string, unknown> {
    const status = this.replica.status();
    return {
      nodeId: this.replica.nodeId,
      role: status.role,
      leader: this.replica.role.leaderId,
      proposal: status.proposal,
      appliedIndex: status.appliedIndex,
      firstUncommittedIndex: status.firstUncommittedIndex,
      backendAppliedIndex: this.pipeline.appliedIndex,
      commandsApplied: this.pipeline.commandsApplied,
      backendFailed: this.pipeline.backendFailed?.message ?? null,
      resync: this.resyncReport?.() ?? null,
      backendPending: this.channel.pending,
      peerAlive: status.peerAlive,
      peerScores: status.peerScores,
      proposeToCommitUs: status.proposeToCommit,
      clients: this.clients,
      readMode: this.options.readMode,
      counters: this.counters,
    };
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.close();
    const server = this.server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
