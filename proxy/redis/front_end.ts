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
import { boundPort, listen } from './listener.js';
import type { Proposer } from './proposer.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import type { Endpoint } from '../../adapters/endpoint.js';
import { effectOf } from './effects.js';
import { isStreamGroupCommand, runStreamGroupCommand } from './stream_group_effects.js';
import { exactTrimEffect, isApproximateTrim } from './stream_trim_effects.js';
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
  replyBytes: number;
  protocolErrors: number;
  authFailures: number;
  outputLimitCloses: number;
  subscriptionFailures: number;
  forwardedClients: number;
  snapshotsServed: number;
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
    replyBytes: 0,
    protocolErrors: 0,
    authFailures: 0,
    outputLimitCloses: 0,
    subscriptionFailures: 0,
    forwardedClients: 0,
    snapshotsServed: 0,
  };
  // Set by the replica: this replica's state transfer, for MU STATUS; and its log.
  resyncReport: (() => Record<string, unknown>) | undefined;
  // The cluster member's links to its peers (mu/member.ts linkReport), when it has them.
  linkReport: (() => unknown[]) | undefined;
  log: (line: string) => void = () => {};
  private readonly sessions = new Set<RedisSession>();
  // Called on every change of role: clients waiting in a blocking pop wake up (a deposed
  // leader's waiting clients are told to go to the new one), subscribers of a deposed
  // leader are let go.
  readonly roleListeners = new Set<() => void>();
  private server: net.Server | undefined;
  private clientIds = 0;

  constructor(
    readonly options: FrontEndOptions,
    // The replica's log, shared with its other front ends: proposals, the write barrier
    // (nondeterministic writes, watched transactions), barrier entries.
    readonly proposer: Proposer,
    readonly channel: BackendChannel,
    readonly keyWatches: KeyWatchRegistry,
    readonly table: CommandTable,
    readonly databases: number,
    readonly backendVersion: string,
    readonly backendAddress: Endpoint,
    private readonly peers: PeerAddressBook,
    readonly access: AccessControl,
    readonly peerAuth: PeerAuthenticator,
  ) {
    proposer.replica.on('role', () => {
      for (const listener of [...this.roleListeners]) listener();
    });
  }

  get replica(): Replica {
    return this.proposer.replica;
  }

  get pipeline(): ApplyPipeline {
    return this.proposer.pipeline;
  }

  async listen(): Promise<void> {
    this.server = await listen(this.options.host, this.options.port, (socket) => this.accept(socket));
  }

  get port(): number {
    return boundPort(this.server, this.options.port);
  }

  private accept(socket: net.Socket): void {
    if (this.sessions.size >= this.options.maxClients) {
      this.counters.rejectedConnections++;
      // A refused client that resets its connection must not crash the process (an
      // unhandled 'error'), and one that already sent data must be read, or its socket
      // never sees its end and stays open (past the limit, and holding close()).
      socket.on('error', () => {});
      socket.resume();
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
      case 'UNKNOWN':
        // Not TRYAGAIN: it may have been applied, and clients retry TRYAGAIN on their own.
        return reply.errorReply(`TIMEOUT mu-proxy: the outcome is unknown: ${error.message}`);
      case 'BUSY':
        return reply.errorReply('TRYAGAIN mu-proxy: too many commands waiting to be replicated');
      case 'TOO_LARGE':
        return reply.errorReply(`ERR mu-proxy: ${error.message}`);
      default:
        return reply.errorReply(`MASTERDOWN mu-proxy: ${error.message}`);
    }
  }

  // Every proposal of this front end goes through the replica's Proposer, so the write
  // barrier can hold it.
  submit(requestId: number, command: Buffer): Promise<number> {
    return this.proposer.submit(requestId, command);
  }

  // Runs a nondeterministic write on this replica's backend and replicates its effect
  // (effects.ts); resolves with the client's reply, once the effect is committed.
  runWithEffects(argv: Buffer[], db: number): Promise<Buffer> {
    const proposer = this.proposer;
    return proposer.exclusive(async () => {
      // Everything proposed before must have reached the backend first.
      const last = proposer.lastProposedRequestId;
      if (last !== undefined) await new Promise<void>((resolve) => this.pipeline.afterApplied(last, () => resolve()));
      if (!this.replica.isLeader) return this.notLeaderReply();
      const run = async (): Promise<Buffer> => (await this.channel.send(db, [encodeCommand(argv)]))[0] as Buffer;
      const query = (commands: Buffer[][]) => this.channel.send(db, commands.map((command) => encodeCommand(command)));
      // The commands that replay the write's effect: one (effects.ts, stream_trim_effects.ts),
      // or several, then one transaction (stream_group_effects.ts).
      let reply: Buffer;
      let effects: Buffer[][] | null;
      if (isStreamGroupCommand(argv)) {
        ({ reply, effects } = await runStreamGroupCommand(argv, run, query));
      } else if (isApproximateTrim(argv)) {
        reply = await run();
        const effect = await exactTrimEffect(argv, reply, query);
        effects = effect === null ? null : [effect];
      } else {
        reply = await run();
        const effect = effectOf(argv, reply);
        effects = effect === null || effect === undefined ? null : [effect];
      }
      if (effects === null || effects.length === 0) return reply;
      const parts = effects.map((effect) => encodeCommand(effect));
      const requestId = this.pipeline.newRequestId();
      const kind = parts.length > 1 ? LogCommandKind.transaction : LogCommandKind.commands;
      const command = encodeLogCommand({ kind, origin: this.replica.nodeId, requestId, db, parts });
      proposer.lastProposedRequestId = requestId;
      const committed = proposer.proposeNow(requestId, command);
      proposer.openGate(); // what waited is proposed after the effect
      try {
        await committed;
      } catch (error) {
        // The command ran here but its effect is not in the log: this backend has diverged.
        this.pipeline.diverged(`a nondeterministic write ran on this replica but was not replicated (${String(error)})`);
        return this.proposalErrorReply(error);
      }
      return reply;
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
    const proposer = this.proposer;
    return proposer.exclusive(async () => {
      const barrierId = this.pipeline.newRequestId();
      const barrierApplied = new Promise<boolean>((resolve) => this.pipeline.afterApplied(barrierId, resolve));
      proposer.lastProposedRequestId = barrierId;
      proposer.counters.barriers++;
      try {
        await proposer.proposeNow(barrierId, encodeLogCommand({ kind: LogCommandKind.barrier, origin: this.replica.nodeId, requestId: barrierId, db: 0, parts: [] }));
      } catch (error) {
        this.pipeline.forget(barrierId);
        return this.proposalErrorReply(error);
      }
      if (!(await barrierApplied) || !this.replica.isLeader) return this.notLeaderReply();
      if (written()) return reply.nilArray;
      const requestId = this.pipeline.newRequestId();
      const answered = this.pipeline.expect(requestId);
      proposer.lastProposedRequestId = requestId;
      const committed = proposer.proposeNow(requestId, encodeLogCommand({ kind: LogCommandKind.transaction, origin: this.replica.nodeId, requestId, db, parts }));
      proposer.openGate();
      try {
        await committed;
      } catch (error) {
        this.pipeline.forget(requestId);
        return this.proposalErrorReply(error);
      }
      return answered.catch((error: Error) => reply.errorReply(`ERR mu-proxy: the local backend failed: ${error.message}`));
    });
  }

  barrier(): { requestId: number; refusal: () => unknown } {
    return this.proposer.barrier();
  }

  noteWrite(): void {
    this.proposer.noteWrite();
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
      `mu_barriers:${this.proposer.counters.barriers}`,
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
      links: this.linkReport?.() ?? null,
      proposeToCommitUs: status.proposeToCommit,
      clients: this.clients,
      readMode: this.options.readMode,
      counters: { ...this.counters, ...this.proposer.counters },
    };
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.close();
    const server = this.server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
