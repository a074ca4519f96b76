// The memcached front end of one replica: its listener, options and counters, and what a
// client is told when this replica cannot take its request. Writes go through the same
// Mu log as the Redis front end's (one log per replica, whichever front ends it serves):
// a log command of kind memcached holds the request as memcached reads it, and every
// replica's apply pipeline hands it to its own memcached in log order.
import net from 'node:net';

import type { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { shapeCode, type ReplyShape } from '../../adapters/memcached/memcached_protocol.js';
import { ProposalError, type Replica } from '../../mu/replica.js';
import type { ApplyPipeline } from '../redis/apply_pipeline.js';
import { encodeLogCommand, LogCommandKind } from '../redis/log_command.js';
import { boundPort, listen } from '../redis/listener.js';
import type { MetricsFront } from '../redis/metrics.js';
import type { PeerAuthenticator } from '../redis/peer_auth.js';
import { line } from './replies.js';
import { MemcachedSession } from './session.js';

// What a front end needs of the replica's log: the proposal side shared by the front ends
// of one replica (one write barrier, one barrier entry stream).
export interface LogAccess {
  readonly replica: Replica;
  readonly pipeline: ApplyPipeline;
  submit(requestId: number, command: Buffer): Promise<number>;
  barrier(): { requestId: number; refusal: () => unknown };
  noteWrite(): void;
}

export interface MemcachedFrontEndOptions {
  host: string;
  port: number;
  readMode: 'linearizable' | 'leader' | 'any';
  // What a follower does with what only the leader serves: hand the connection to the
  // leader's memcached front end ("forward"), or answer SERVER_ERROR naming it ("redirect").
  followerRequests: 'forward' | 'redirect';
  maxClients: number;
  maxPipeline: number;
  maxOutputBytes: number;
  idleTimeoutMs: number;
}

export interface MemcachedCounters {
  connections: number;
  rejectedConnections: number;
  requests: number;
  writes: number;
  reads: number;
  replyBytes: number;
  outputLimitCloses: number;
  forwardedClients: number;
}

export class MemcachedFrontEnd {
  readonly counters: MemcachedCounters = { connections: 0, rejectedConnections: 0, requests: 0, writes: 0, reads: 0, replyBytes: 0, outputLimitCloses: 0, forwardedClients: 0 };
  private readonly sessions = new Set<MemcachedSession>();
  // Called on every change of role: a follower's relayed clients follow one leader.
  readonly roleListeners = new Set<() => void>();
  private server: net.Server | undefined;

  constructor(
    readonly options: MemcachedFrontEndOptions,
    readonly log: LogAccess,
    readonly backend: MemcachedBackend,
    // The backend's item_size_max: larger values are refused as memcached refuses them.
    readonly maxItemBytes: number,
    readonly leaderAddress: (id: number) => { host: string; port: number } | undefined,
    readonly peerAuth: PeerAuthenticator,
  ) {
    log.replica.on('role', () => {
      for (const listener of [...this.roleListeners]) listener();
    });
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
      // A client that resets the connection makes this write fail: an 'error' event with
      // no listener would end the process. What the client sends is read away, or the
      // socket would never see its end and stay open (past the limit, and holding close()).
      socket.on('error', () => {});
      socket.resume();
      socket.end('SERVER_ERROR mu-proxy: too many connections\r\n');
      return;
    }
    this.counters.connections++;
    this.sessions.add(new MemcachedSession(socket, this));
  }

  sessionClosed(session: MemcachedSession): void {
    this.sessions.delete(session);
  }

  // Why this replica cannot take a write now, as the reply line; undefined when it can.
  writeRefusal(): Buffer | undefined {
    if (this.log.pipeline.backendFailed !== undefined) {
      return line('SERVER_ERROR mu-proxy: this replica is getting back in step; it serves nothing until then');
    }
    return this.log.replica.isLeader ? undefined : this.notLeaderReply();
  }

  notLeaderReply(): Buffer {
    const leader = this.log.replica.role.leaderId;
    if (leader === null || leader === this.log.replica.nodeId) return line('SERVER_ERROR mu-proxy: no leader at the moment; retry shortly');
    const address = this.leaderAddress(leader);
    return line(`SERVER_ERROR mu-proxy: this replica does not lead; the leader is replica ${leader}${address === undefined ? '' : ` at ${address.host}:${address.port}`}`);
  }

  proposalErrorReply(error: unknown): Buffer {
    if (!(error instanceof ProposalError)) return line(`SERVER_ERROR mu-proxy: ${String(error)}`);
    switch (error.code) {
      case 'NOT_LEADER':
        return this.notLeaderReply();
      case 'LOST':
        return line('SERVER_ERROR mu-proxy: leadership changed while the command was in flight; it was not applied');
      case 'UNKNOWN':
        return line(`SERVER_ERROR mu-proxy: the outcome is unknown: ${error.message}`);
      case 'BUSY':
        return line('SERVER_ERROR mu-proxy: too many commands waiting to be replicated');
      default:
        return line(`SERVER_ERROR mu-proxy: ${error.message}`);
    }
  }

  // Proposes a memcached request; resolves with this replica's memcached's reply to it once
  // applied, or the line that says why it was not.
  proposeWrite(requestId: number, request: Buffer, shape: ReplyShape): Promise<Buffer> {
    const command = encodeLogCommand({ kind: LogCommandKind.memcached, origin: this.log.replica.nodeId, requestId, db: shapeCode(shape), parts: [request] });
    this.log.noteWrite();
    return this.proposeForReply(requestId, command, (reply) => reply);
  }

  // `mu_check`: proposes a digest entry; every replica hashes its memcached's items when
  // it applies it (apply_pipeline.ts). Answers `DIGEST <index> <this replica's digest>`.
  proposeDigest(): Promise<Buffer> {
    const refusal = this.writeRefusal();
    if (refusal !== undefined) return Promise.resolve(refusal);
    const requestId = this.log.pipeline.newRequestId();
    const command = encodeLogCommand({ kind: LogCommandKind.digest, origin: this.log.replica.nodeId, requestId, db: 0, parts: [] });
    return this.proposeForReply(requestId, command, (reply) => {
      // `*2\r\n:<index>\r\n<digest reply>` from the apply pipeline.
      const parsed = /^\*2\r\n:(\d+)\r\n/.exec(reply.toString('latin1'));
      return parsed === null ? line('SERVER_ERROR mu-proxy: unexpected digest reply') : digestLine(`DIGEST ${parsed[1]}`, reply.subarray(parsed[0].length));
    });
  }

  // Proposes `command` (request `requestId`); resolves with `translate` of this replica's
  // reply to it once applied, or the line that says why it was not.
  private proposeForReply(requestId: number, command: Buffer, translate: (reply: Buffer) => Buffer): Promise<Buffer> {
    const pipeline = this.log.pipeline;
    const answered = pipeline.expect(requestId);
    return new Promise((resolve) => {
      this.log.submit(requestId, command).catch((error: unknown) => {
        pipeline.forget(requestId);
        resolve(this.proposalErrorReply(error));
      });
      answered.then(
        (reply) => resolve(translate(reply)),
        (error: Error) => resolve(line(`SERVER_ERROR mu-proxy: the local memcached failed: ${error.message}`)),
      );
    });
  }

  // `mu_digest <index>`: this replica's digest at that digest entry; PENDING until it
  // applied it.
  digestAt(index: number): Buffer {
    const digest = this.log.pipeline.digestAt(index);
    if (digest === 'pending') return line('PENDING');
    if (digest === undefined) return line(`CLIENT_ERROR mu-proxy: no digest kept for index ${index} (not a digest entry, or too old)`);
    return digestLine('DIGEST', digest);
  }

  // This front end's part of the replica's Prometheus metrics.
  metricsFront(): MetricsFront {
    return { prefix: 'memcached_', clients: () => this.sessions.size, counters: this.counters };
  }

  // `stats` gains the proxy's own lines, before END.
  withProxyStats(raw: Buffer): Buffer {
    if (!raw.subarray(raw.length - 5).equals(Buffer.from('END\r\n'))) return raw;
    const status = this.log.replica.status();
    const lines = [
      `STAT mu_node_id ${this.log.replica.nodeId}`,
      `STAT mu_role ${status.role}`,
      `STAT mu_leader ${this.log.replica.role.leaderId ?? -1}`,
      `STAT mu_applied_index ${status.appliedIndex}`,
      `STAT mu_backend_applied_index ${this.log.pipeline.appliedIndex}`,
      `STAT mu_read_mode ${this.options.readMode}`,
      `STAT mu_clients ${this.sessions.size}`,
      `STAT mu_writes ${this.counters.writes}`,
      `STAT mu_reads ${this.counters.reads}`,
    ];
    return Buffer.concat([raw.subarray(0, raw.length - 5), Buffer.from(`${lines.join('\r\n')}\r\nEND\r\n`)]);
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.close();
    const server = this.server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// A digest as one memcached-style line: the apply pipeline keeps it as a RESP simple
// string (`+memcached:<hash>`); anything else (a backend's error) is passed on as text.
function digestLine(prefix: string, resp: Buffer): Buffer {
  const text = resp.toString('latin1').replace(/\r\n$/, '');
  return text.startsWith('+') ? line(`${prefix} ${text.slice(1)}`) : line(`SERVER_ERROR mu-proxy: digest failed: ${text.replace(/[\r\n]/g, ' ')}`);
}
