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
import type { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { shapeOf } from '../../adapters/memcached/memcached_protocol.js';
import type { KeyWatchRegistry } from './key_watch.js';
import { latencyTrace } from './latency_trace.js';
import { ChunkAssembler, decodeLogCommand, LogCommandKind, type LogCommand, type PartialChunk } from './log_command.js';
import { encodeCommand } from '../../adapters/redis/resp.js';

const multi = encodeCommand(['MULTI']);
const exec = encodeCommand(['EXEC']);
const debugDigest = encodeCommand(['DEBUG', 'DIGEST']);
const ping = encodeCommand(['PING']);
const metadump = Buffer.from('lru_crawler metadump all\r\n');
const mnRequest = Buffer.from('mn\r\n');

// A memcached's digest: every item's key, expiry, CAS and size from lru_crawler metadump
// (leaving out last access and fetched, which reads change), sorted, hashed. Equal CAS
// values mean the same stores were applied; with the sizes, a difference in any item shows.
// A listing memcached refused (BUSY: another lru_crawler job ran; an error line) gives no
// digest, and says so: `mu-proxy check` then reports the replica as not answering, never
// as different.
function memcachedDigest(listing: Buffer): string {
  const text = listing.toString('latin1');
  if (!text.startsWith('key=') && !text.startsWith('END')) return `unavailable (${text.trim()})`;
  const items = text
    .split('\n')
    .filter((line) => line.startsWith('key='))
    .map((line) => line.replace(/ la=\S+/, '').replace(/ fetch=\S+/, '').trim())
    .sort();
  return crypto.createHash('sha1').update(items.join('\n')).digest('hex');
}
// Digests kept for `MU DIGEST <index>`: the newest ones.
const keptDigests = 64;

// A waiter gets the raw reply to its request (for a transaction, EXEC's reply), or an
// error when the backend failed before answering.
interface Waiter {
  resolve: (reply: Buffer) => void;
  reject: (error: Error) => void;
}

export interface ApplyPipelineEvents {
  // The backend failed while applying: this replica's state is no longer known to match
  // the log. The owner stops serving and resynchronises (state_transfer.ts).
  'backend-failed': [error: Error];
}

export interface ApplyCursor {
  nextIndex: number; // the entry after the last one handed to the backend
  position: number; // where it starts in the log
  // A command larger than an entry whose first pieces came before this point (a snapshot's).
  chunk?: PartialChunk;
}

export class ApplyPipeline extends EventEmitter<ApplyPipelineEvents> {
  private readonly waiters = new Map<number, Waiter>();
  private readonly chunks = new ChunkAssembler();
  private readonly followers = new Map<number, Array<(applied: boolean) => void>>();
  private lastOwnApplied = 0; // the highest own request id handed to the backend
  // Request ids are this process's random tag (21 bits) times 2^32 plus a counter: a
  // restarted replica re-applies its previous incarnation's entries while catching up,
  // and those must not be taken for the new incarnation's (a 1 in 2^21 chance of a tag
  // repeating). Ids stay below 2^53, exact as numbers.
  private readonly tag = crypto.randomInt(1, 2 ** 21);
  private readonly firstRequestId = this.tag * 2 ** 32;
  private nextRequestId = this.firstRequestId;
  private failed: Error | undefined;
  // The backend's DEBUG DIGEST reply at the index of each digest entry, newest last.
  private readonly digests = new Map<number, Buffer>();
  private readonly digestsPending = new Set<number>();
  // The log cursor just past the last entry handed to the backend.
  private cursor: ApplyCursor | undefined;
  // While a snapshot is taken here: the entries that arrived meanwhile, applied after it.
  private held: AppliedEntry[] | undefined;
  // The index of the last entry handed to the backend (its replies may still be coming).
  appliedIndex = 0;
  commandsApplied = 0;

  // Where memcached commands (log kind memcached) go, on a replica that fronts memcached.
  private memcached: MemcachedBackend | undefined;
  private openDigestConnection: (() => Promise<MemcachedBackend>) | undefined;
  private digestConnection: MemcachedBackend | undefined;

  constructor(
    private readonly replica: Replica,
    // Undefined on a replica that fronts memcached only.
    private readonly channel: BackendChannel | undefined,
    private readonly keyWatches: KeyWatchRegistry,
  ) {
    super();
    if (latencyTrace !== undefined) replica.recordTimes = true;
    replica.on('applied', (entry) => this.apply(entry));
  }

  // `openDigestConnection`: a connection of its own to the same memcached, for the
  // metadump a digest entry takes (applyDigest).
  attachMemcached(backend: MemcachedBackend, openDigestConnection?: () => Promise<MemcachedBackend>): void {
    this.memcached = backend;
    this.openDigestConnection = openDigestConnection;
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
  // is dropped so the caller can answer the client itself, and what waited for it to be
  // applied is told it never will be.
  forget(requestId: number): void {
    this.waiters.delete(requestId);
    this.runFollowers(requestId, false);
  }

  // Whether this replica's request `requestId` has been handed to the backend. Own
  // requests are proposed in id order and applied in log order, so one id says it all.
  isApplied(requestId: number): boolean {
    return requestId <= this.lastOwnApplied;
  }

  // Runs `then(true)` synchronously right after request `requestId` (a write, or a
  // barrier) has been handed to the backend, before anything later in the log: a read
  // sent there is ordered exactly after it. `then(false)` if it is never applied.
  afterApplied(requestId: number, then: (applied: boolean) => void): void {
    if (this.isApplied(requestId)) {
      then(true);
      return;
    }
    if (this.failed !== undefined) {
      then(false); // nothing is applied here until a state transfer
      return;
    }
    const list = this.followers.get(requestId);
    if (list === undefined) this.followers.set(requestId, [then]);
    else list.push(then);
  }

  private runFollowers(requestId: number, applied: boolean): void {
    const list = this.followers.get(requestId);
    if (list === undefined) return;
    this.followers.delete(requestId);
    for (const then of list) then(applied);
  }

  private apply(entry: AppliedEntry): void {
    // A failed backend's state is replaced by a snapshot; what the log delivers until the
    // engine stops is covered by it.
    if (this.failed !== undefined) return;
    if (this.held !== undefined) {
      this.held.push(entry);
      return;
    }
    this.appliedIndex = entry.index;
    this.cursor = { nextIndex: entry.index + 1, position: entry.nextPosition };
    for (const [position, command] of entry.commands.entries()) {
      const decoded = decodeLogCommand(command.data);
      let logCommand: LogCommand;
      if (decoded.kind === LogCommandKind.chunk) {
        const whole = this.chunks.push(decoded);
        if (whole === undefined) continue;
        logCommand = whole;
      } else {
        this.chunks.interrupt();
        logCommand = decoded;
      }
      const own = logCommand.origin === this.replica.nodeId && Math.floor(logCommand.requestId / 2 ** 32) === this.tag;
      // A barrier only proves leadership; the reads waiting for it go to the backend now,
      // between what comes before it in the log and what comes after.
      if (logCommand.kind === LogCommandKind.barrier) {
        if (own) this.ownApplied(logCommand.requestId);
        continue;
      }
      if (logCommand.kind === LogCommandKind.digest) {
        const rest = entry.commands.slice(position + 1);
        // A memcached digest holds the apply stream (applyDigest); the rest of this entry
        // waits with it.
        if (this.applyDigest(entry.index, own ? logCommand.requestId : undefined, rest.length > 0 ? { ...entry, commands: rest } : undefined)) return;
        continue;
      }
      const waiter = own ? this.waiters.get(logCommand.requestId) : undefined;
      if (waiter !== undefined) this.waiters.delete(logCommand.requestId);
      if (logCommand.kind === LogCommandKind.memcached) {
        this.applyMemcached(logCommand, waiter);
        if (own) this.ownApplied(logCommand.requestId);
        continue;
      }
      const channel = this.channel;
      if (channel === undefined) {
        waiter?.reject(new Error('no redis-server on this replica'));
        this.fail(new Error('a Redis command reached a replica without a redis-server (the replicas are configured differently)'));
        return;
      }
      const group =
        logCommand.kind === LogCommandKind.transaction ? [multi, ...logCommand.parts, exec] : logCommand.parts;
      this.commandsApplied += logCommand.parts.length;
      if (this.keyWatches.active) {
        for (const part of logCommand.parts) this.keyWatches.applied(logCommand.db, part, own ? logCommand.requestId : undefined);
      }
      if (own && latencyTrace !== undefined) {
        latencyTrace.mark(logCommand.requestId, 'flushed', this.replica.lastFlushNs);
        latencyTrace.mark(logCommand.requestId, 'submitted', this.replica.lastSubmitNs);
        latencyTrace.mark(logCommand.requestId, 'delivered', this.replica.lastDeliveryNs);
        latencyTrace.mark(logCommand.requestId, 'applied');
      }
      const sent = channel.send(logCommand.db, group);
      if (own) latencyTrace?.mark(logCommand.requestId, 'sent');
      sent.then(
        (replies) => {
          if (own) latencyTrace?.mark(logCommand.requestId, 'replied');
          waiter?.resolve(replies[replies.length - 1] as Buffer);
        },
        (error: Error) => {
          waiter?.reject(error);
          this.fail(error);
        },
      );
      if (own) this.ownApplied(logCommand.requestId);
    }
  }

  private applyMemcached(logCommand: LogCommand, waiter: Waiter | undefined): void {
    const backend = this.memcached;
    const request = logCommand.parts[0];
    if (backend === undefined || request === undefined) {
      waiter?.reject(new Error('no memcached on this replica'));
      this.fail(new Error('a memcached command reached a replica without a memcached (the replicas are configured differently)'));
      return;
    }
    this.commandsApplied++;
    backend.send(request, shapeOf(logCommand.db)).then(
      (reply) => waiter?.resolve(reply),
      (error: Error) => {
        waiter?.reject(error);
        this.fail(error);
      },
    );
  }

  // Records the backend's digest at `index`; this replica's own request gets
  // `*2 :index <digest reply>`. The redis-server is asked in apply order. memcached refuses
  // a metadump that has other requests before it on its connection ("cannot pipeline"),
  // and clients' reads share the apply connection: so the apply stream is held (the rest
  // of the entry, `rest`, and what follows), the apply connection is let drain (an mn
  // answered means everything before it was), the metadump runs alone on a connection of
  // its own, and then the stream goes on. True when the stream is held: the caller stops
  // applying this entry (`rest` is applied on release).
  private applyDigest(index: number, ownRequestId: number | undefined, rest: AppliedEntry | undefined): boolean {
    const waiter = ownRequestId === undefined ? undefined : this.waiters.get(ownRequestId);
    if (ownRequestId !== undefined) this.waiters.delete(ownRequestId);
    this.digestsPending.add(index);
    const redis = this.channel?.send(0, [debugDigest]).then((replies) => replies[0] as Buffer);
    const backend = this.memcached;
    let memcached: Promise<string> | undefined;
    if (backend !== undefined) {
      this.held = rest === undefined ? [] : [rest];
      memcached = backend
        .send(mnRequest, 'line')
        .then(() => this.takeMetadump())
        .finally(() => this.release());
    }
    void Promise.all([redis, memcached]).then(
      ([redisReply, memcachedText]) => {
        // A redis-server alone: its own DEBUG DIGEST reply, as is. With a memcached, one
        // line naming each backend's digest.
        let digest = redisReply ?? Buffer.alloc(0);
        if (memcachedText !== undefined) {
          if (redisReply !== undefined && redisReply[0] !== 0x2b /* + */) digest = redisReply;
          else digest = Buffer.from(`+${redisReply === undefined ? '' : `redis:${redisReply.toString('latin1', 1, redisReply.length - 2)} `}memcached:${memcachedText}\r\n`);
        }
        this.digestsPending.delete(index);
        this.digests.set(index, digest);
        if (this.digests.size > keptDigests) this.digests.delete(this.digests.keys().next().value as number);
        waiter?.resolve(Buffer.concat([Buffer.from(`*2\r\n:${index}\r\n`), digest]));
      },
      (error: Error) => {
        waiter?.reject(error);
        this.fail(error);
      },
    );
    if (ownRequestId !== undefined) this.ownApplied(ownRequestId);
    return backend !== undefined;
  }

  // Closes the digest connection, if one was opened (when the replica stops).
  async close(): Promise<void> {
    const connection = this.digestConnection;
    this.digestConnection = undefined;
    await connection?.close();
  }

  // The memcached's items as a digest, from a metadump on the digest connection (opened
  // once, again after it closes); a digest that could not be taken says why instead.
  private async takeMetadump(): Promise<string> {
    try {
      if (this.digestConnection === undefined || this.digestConnection.closed) {
        if (this.openDigestConnection === undefined) return 'unavailable (no connection for metadumps)';
        this.digestConnection = await this.openDigestConnection();
      }
      return memcachedDigest(await this.digestConnection.send(metadump, 'listing'));
    } catch (error) {
      return `unavailable (${(error as Error).message})`;
    }
  }

  // The backend's DEBUG DIGEST reply at digest entry `index`; 'pending' while it is not
  // applied and answered here yet; undefined when it is not a digest entry, or too old.
  digestAt(index: number): Buffer | 'pending' | undefined {
    if (index > this.appliedIndex || this.digestsPending.has(index)) return 'pending';
    return this.digests.get(index);
  }

  private ownApplied(requestId: number): void {
    this.lastOwnApplied = Math.max(this.lastOwnApplied, requestId);
    this.runFollowers(requestId, true);
  }

  // This replica's backend no longer matches the log (a nondeterministic write ran here
  // and its effect was never committed): stop as if the backend had failed.
  diverged(reason: string): void {
    this.fail(new Error(reason));
  }

  private fail(error: Error): void {
    if (this.failed !== undefined) return;
    this.failed = error;
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
    // What waits for an own request to be applied: it never will be, here.
    const followers = [...this.followers.keys()];
    for (const requestId of followers) this.runFollowers(requestId, false);
    this.held = undefined;
    // The writes applied while this replica is out come in with a snapshot, never through
    // the apply stream: a watched key may change unseen.
    this.keyWatches.touchAll(undefined);
    this.emit('backend-failed', error);
  }

  // The backend failed, or the engine fell behind the recycled log: the owner takes over
  // (state transfer) and this pipeline applies nothing until `restored`.
  lost(reason: string): void {
    this.fail(new Error(reason));
  }

  // --- state transfer ---------------------------------------------------------------------

  // The donor's side: holds the apply stream right after the last entry handed to the
  // backend and resolves, once the backend has answered everything before, with the
  // cursor a snapshot taken now resumes from. Undefined when nothing was applied yet or a
  // snapshot is already being taken. `release` lets the held entries go.
  async holdForSnapshot(): Promise<ApplyCursor | undefined> {
    if (this.held !== undefined || this.cursor === undefined || this.failed !== undefined || this.channel === undefined) return undefined;
    this.held = [];
    const partial = this.chunks.assembling;
    const cursor: ApplyCursor = partial === undefined ? this.cursor : { ...this.cursor, chunk: partial };
    await this.channel.send(0, [ping]);
    return cursor;
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const entry of held) this.apply(entry);
  }

  // The recipient's side: the backend now holds the state just before `cursor.nextIndex`
  // (a snapshot) and the engine resumes there.
  restored(cursor: ApplyCursor): void {
    this.failed = undefined;
    this.cursor = { nextIndex: cursor.nextIndex, position: cursor.position };
    this.appliedIndex = cursor.nextIndex - 1;
    this.chunks.resume(cursor.chunk);
    // Watches registered while the replica was out missed the writes the snapshot brought.
    this.keyWatches.touchAll(undefined);
  }

  get backendFailed(): Error | undefined {
    return this.failed;
  }
}
