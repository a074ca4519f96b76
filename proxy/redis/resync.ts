// A replica getting back in step after its backend lost the replicated state (the
// redis-server died or restarted empty, or ran a write the log does not hold) or its
// engine fell behind the recycled log. Never silently divergent: the replica stops
// applying and serving, takes no part in the cluster (Replica.requestStateTransfer), waits
// for its redis-server to answer again, empties it, copies a snapshot from a healthy
// replica (state_transfer.ts) and resumes the log right after the snapshot.
import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { describeEndpoint, type Endpoint } from '../../adapters/endpoint.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import type { Replica } from '../../mu/replica.js';
import type { ApplyPipeline } from './apply_pipeline.js';
import type { BackendChannel } from './backend_channel.js';
import { fetchSnapshot, type SnapshotCursor } from './state_transfer.js';

export interface ResyncOptions {
  replica: Replica;
  pipeline: ApplyPipeline;
  channel: BackendChannel;
  backendAddress: Endpoint;
  // The other replicas' client addresses, by id.
  clientAddress: (id: number) => { host: string; port: number } | undefined;
  // The command that proves to a donor this replica is a member (MU PEER, peer_auth.ts).
  greeting: () => Buffer;
  log: (line: string) => void;
  retryMs?: number; // between attempts (default 500)
  snapshotTimeoutMs?: number; // silence that fails a transfer (default 10 s)
}

export type ResyncState = 'in step' | 'waiting for the engine' | 'waiting for the backend' | 'copying a snapshot';

export class Resynchroniser {
  private running = false;
  private stopped = false;
  state: ResyncState = 'in step';
  reason: string | undefined;
  donor: number | undefined;
  lastError: string | undefined;
  completed = 0;

  constructor(private readonly options: ResyncOptions) {}

  // Starts getting back in step, unless already under way.
  start(reason: string): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.reason = reason;
    void this.run().finally(() => {
      this.running = false;
    });
  }

  stop(): void {
    this.stopped = true;
  }

  report(): Record<string, unknown> {
    return { state: this.state, reason: this.reason ?? null, donor: this.donor ?? null, lastError: this.lastError ?? null, completed: this.completed };
  }

  private async run(): Promise<void> {
    const { replica, pipeline, log } = this.options;
    log(`getting back in step: ${this.reason}`);
    pipeline.lost(this.reason ?? 'state transfer');
    replica.requestStateTransfer();
    this.state = 'waiting for the engine';
    while (!replica.status().needsStateTransfer) {
      if (this.stopped) return;
      await sleep(10);
    }
    for (let attempt = 1; !this.stopped; attempt++) {
      let backend: RedisBackend | undefined;
      try {
        this.state = 'waiting for the backend';
        backend = await this.connectBackend();
        this.state = 'copying a snapshot';
        const cursor = await this.copyFromADonor(backend);
        // In this order: the next applied entry (the one after the snapshot) must find the
        // new connection and the pipeline open.
        const previous = this.options.channel.backend;
        this.options.channel.replace(backend);
        pipeline.restored(cursor);
        const resumed = new Promise<boolean>((resolve) => replica.once('state-transfer-resumed', (_index, ok) => resolve(ok)));
        replica.resumeFromStateTransfer(cursor.nextIndex, cursor.position);
        if (!(await resumed)) throw new Error('the engine did not need the state transfer any more');
        if (previous !== backend) await previous.close().catch(() => {});
        this.completed++;
        this.state = 'in step';
        this.lastError = undefined;
        log(`back in step from replica ${this.donor}'s snapshot (${cursor.keys} keys); applying the log from index ${cursor.nextIndex}`);
        return;
      } catch (error) {
        this.lastError = (error as Error).message;
        if (attempt === 1 || attempt % 20 === 0) log(`state transfer attempt ${attempt} failed: ${this.lastError}; trying again`);
        if (backend !== undefined && backend !== this.options.channel.backend) await backend.close().catch(() => {});
        await sleep(this.options.retryMs ?? 500);
      }
    }
  }

  // A connection to this replica's redis-server, checked and emptied.
  private async connectBackend(): Promise<RedisBackend> {
    const address = this.options.backendAddress;
    const backend = await RedisBackend.connect({ ...address, connectTimeoutMs: 1000, name: `backend ${describeEndpoint(address)}` });
    const policy = (await backend.send(encodeCommand(['CONFIG', 'GET', 'maxmemory-policy']))).toString('latin1');
    if (!policy.includes('noeviction')) {
      await backend.close();
      throw new Error(`the backend's maxmemory-policy is not noeviction (${policy.replace(/\r\n/g, ' ').trim()})`);
    }
    const flushed = (await backend.send(encodeCommand(['FLUSHALL']))).toString('latin1');
    if (flushed !== '+OK\r\n') {
      await backend.close();
      throw new Error(`FLUSHALL failed on the backend: ${flushed.trim()}`);
    }
    return backend;
  }

  // Tries the live replicas, followers first (a snapshot holds the donor's apply stream,
  // which delays its clients' replies only if it leads).
  private async copyFromADonor(backend: RedisBackend): Promise<SnapshotCursor & { keys: number }> {
    const { replica } = this.options;
    const status = replica.status();
    const leader = replica.role.leaderId;
    const candidates = status.peerAlive
      .map((alive, id) => ({ alive, id }))
      .filter(({ alive, id }) => alive && id !== replica.nodeId)
      .map(({ id }) => id)
      .sort((a, b) => Number(a === leader) - Number(b === leader));
    const failures: string[] = [];
    for (const id of candidates) {
      const address = this.options.clientAddress(id);
      if (address === undefined) continue;
      this.donor = id;
      try {
        return await fetchSnapshot({
          host: address.host,
          port: address.port,
          backend,
          timeoutMs: this.options.snapshotTimeoutMs ?? 10000,
          greeting: this.options.greeting(),
        });
      } catch (error) {
        failures.push(`replica ${id}: ${(error as Error).message}`);
        await backend.sendMany([encodeCommand(['FLUSHALL']), encodeCommand(['SELECT', '0'])]);
      }
    }
    throw new Error(failures.length === 0 ? 'no live replica to copy from' : failures.join('; '));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
