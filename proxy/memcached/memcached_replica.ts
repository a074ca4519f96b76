// A replica's memcached front end, assembled: its memcached (checked, emptied when
// configured to be), the apply pipeline's memcached side, and the listener. A replica that
// fronts memcached only is a MemcachedReplica; one that fronts Redis too gets its memcached
// front end from the same function (proxy/redis/redis_replica.ts), on the same log.
import type http from 'node:http';

import { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { describeEndpoint } from '../../adapters/endpoint.js';
import { ClusterMember } from '../../mu/member.js';
import type { Replica } from '../../mu/replica.js';
import { ApplyPipeline } from '../redis/apply_pipeline.js';
import { CommandTable } from '../redis/command_table.js';
import { reachableAt, type RedisProxyConfig } from '../redis/config.js';
import { KeyWatchRegistry } from '../redis/key_watch.js';
import { startMetrics } from '../redis/metrics.js';
import { PeerAuthenticator } from '../redis/peer_auth.js';
import { Proposer } from '../redis/proposer.js';
import { MemcachedFrontEnd } from './front_end.js';

const defaultItemSizeMax = 1024 * 1024;

// Where replica `id` takes memcached clients, as another replica reaches it.
export function memcachedClientAddress(config: RedisProxyConfig, id: number): { host: string; port: number } | undefined {
  return reachableAt(config, id, config.memcachedReplicas[id]?.listen);
}

// Connects this replica's memcached and checks it: empty (or emptied with
// flushBackendOnStart), and its largest item size, which the front end enforces as
// memcached does. Eviction is local to each server: it is reported, not prevented.
export async function openMemcachedBackend(
  config: RedisProxyConfig,
  nodeId: number,
  log: (line: string) => void,
): Promise<{ backend: MemcachedBackend; itemSizeMax: number }> {
  const addresses = config.memcachedReplicas[nodeId];
  if (addresses === undefined) throw new Error(`replica ${nodeId} has no memcached/memcachedBackend addresses in the configuration`);
  const backend = await MemcachedBackend.connect({ ...addresses.backend, name: `replica ${nodeId}'s memcached` });
  try {
    const stats = (await backend.send(Buffer.from('stats\r\n'), 'stats')).toString('latin1');
    const settings = (await backend.send(Buffer.from('stats settings\r\n'), 'stats')).toString('latin1');
    const items = Number(/^STAT curr_items (\d+)\r$/m.exec(stats)?.[1] ?? '0');
    if (items > 0) {
      if (!config.flushBackendOnStart) {
        throw new Error(`the memcached at ${describeEndpoint(addresses.backend)} holds ${items} items; a replica's backend holds the cluster's replicated state only: empty it, or set redis.flushBackendOnStart`);
      }
      await backend.send(Buffer.from('flush_all\r\n'), 'line');
      log('flushed the memcached (redis.flushBackendOnStart)');
    }
    if (/^STAT evictions on\r$/m.test(settings)) {
      log(`note: the memcached at ${describeEndpoint(addresses.backend)} evicts when full (memcached -M turns that off); give it memory enough, or the replicas may hold different items`);
    }
    const itemSizeMax = Number(/^STAT item_size_max (\d+)\r$/m.exec(settings)?.[1] ?? defaultItemSizeMax);
    return { backend, itemSizeMax };
  } catch (error) {
    await backend.close();
    throw error;
  }
}

export async function startMemcachedFrontEnd(
  config: RedisProxyConfig,
  nodeId: number,
  proposer: Proposer,
  backend: MemcachedBackend,
  itemSizeMax: number,
  log: (line: string) => void,
): Promise<MemcachedFrontEnd> {
  const addresses = config.memcachedReplicas[nodeId];
  if (addresses === undefined) throw new Error(`replica ${nodeId} has no memcached addresses in the configuration`);
  proposer.pipeline.attachMemcached(backend, () =>
    MemcachedBackend.connect({ ...addresses.backend, connectTimeoutMs: 2000, name: `memcached ${describeEndpoint(addresses.backend)} (digests)` }),
  );
  backend.onClose((error) => {
    if (error !== undefined) proposer.pipeline.lost(`the local memcached failed: ${error.message}`);
  });
  const front = new MemcachedFrontEnd(
    { ...config.memcached, host: addresses.listen.host, port: addresses.listen.port },
    proposer,
    backend,
    itemSizeMax,
    (id) => memcachedClientAddress(config, id),
    new PeerAuthenticator(config.cluster.secret, nodeId),
  );
  await front.listen();
  log(`serving memcached clients on ${addresses.listen.host}:${front.port} (backend ${describeEndpoint(addresses.backend)})`);
  return front;
}

// A memcached backend's state cannot be copied from another replica yet (no state
// transfer for memcached): a replica whose memcached failed, or that fell behind the
// recycled log, takes no part and says so, until it is restarted with an empty memcached.
export function takeOutOnLoss(replica: Replica, pipeline: ApplyPipeline, log: (line: string) => void): void {
  let out = false;
  const takeOut = (reason: string) => {
    if (out) return;
    out = true;
    pipeline.lost(reason);
    replica.requestStateTransfer();
    log(`${reason}; memcached state cannot be copied from another replica yet, so this replica takes no part until it is restarted with an empty memcached`);
  };
  pipeline.on('backend-failed', (error) => takeOut(error.message));
  replica.on('needs-state-transfer', () => takeOut('this replica fell behind the recycled log'));
}

export interface MemcachedReplicaOptions {
  log?: (line: string) => void;
}

// A replica that fronts memcached only.
export class MemcachedReplica {
  private constructor(
    readonly member: ClusterMember,
    readonly pipeline: ApplyPipeline,
    readonly front: MemcachedFrontEnd,
    readonly backend: MemcachedBackend,
    readonly metrics: http.Server | undefined,
  ) {}

  static async start(config: RedisProxyConfig, nodeId: number, options: MemcachedReplicaOptions = {}): Promise<MemcachedReplica> {
    const log = options.log ?? ((line: string) => console.error(`mu-proxy ${nodeId}: ${line}`));
    const { backend, itemSizeMax } = await openMemcachedBackend(config, nodeId, log);
    try {
      const member = await ClusterMember.start(config.cluster, nodeId, { log });
      // No redis-server here: no command table, no watches, no Redis channel.
      const pipeline = new ApplyPipeline(member.replica, undefined, new KeyWatchRegistry(CommandTable.fromCommandReply([])));
      takeOutOnLoss(member.replica, pipeline, log);
      const front = await startMemcachedFrontEnd(config, nodeId, new Proposer(member.replica, pipeline), backend, itemSizeMax, log);
      const source = { replica: member.replica, pipeline, backendPending: () => backend.pending, fronts: [front.metricsFront()] };
      const metrics = await startMetrics(source, config.memcachedReplicas[nodeId]?.metrics, log);
      return new MemcachedReplica(member, pipeline, front, backend, metrics);
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const metrics = this.metrics;
    if (metrics !== undefined) await new Promise<void>((resolve) => metrics.close(() => resolve()));
    await this.front.close();
    await this.member.stop();
    await this.pipeline.close();
    await this.backend.close();
  }
}
