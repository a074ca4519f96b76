// One replica of the Redis proxy, assembled: its local redis-server (checked and read for
// its command table), its cluster member (engine and control plane), the apply pipeline
// and the RESP front end.
import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { describeEndpoint } from '../../adapters/endpoint.js';
import { parseReply } from '../../adapters/redis/parse_reply.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { ClusterMember } from '../../mu/member.js';
import { ApplyPipeline } from './apply_pipeline.js';
import { BackendChannel } from './backend_channel.js';
import { CommandTable } from './command_table.js';
import { reachableAt, type RedisProxyConfig } from './config.js';
import { FrontEnd } from './front_end.js';
import { AccessControl } from './acl.js';
import { KeyWatchRegistry } from './key_watch.js';
import { PeerAuthenticator } from './peer_auth.js';
import { Proposer } from './proposer.js';
import type { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import type { MemcachedFrontEnd } from '../memcached/front_end.js';
import { openMemcachedBackend, startMemcachedFrontEnd, takeOutOnLoss } from '../memcached/memcached_replica.js';
import { Resynchroniser } from './resync.js';
import { type MetricsFront, startMetrics } from './metrics.js';
import type http from 'node:http';

async function query(backend: RedisBackend, ...argv: string[]): Promise<unknown> {
  return parseReply(await backend.send(encodeCommand(argv)));
}

// Where replica `id` takes Redis clients, as another replica reaches it.
export function clientAddress(config: RedisProxyConfig, id: number): { host: string; port: number } | undefined {
  return reachableAt(config, id, config.replicas[id]?.listen);
}

export interface RedisReplicaOptions {
  log?: (line: string) => void;
}

export class RedisReplica {
  private constructor(
    readonly member: ClusterMember,
    readonly channel: BackendChannel,
    readonly pipeline: ApplyPipeline,
    readonly front: FrontEnd,
    readonly metrics: http.Server | undefined,
    readonly resync: Resynchroniser,
    // The memcached front end, when the cluster fronts memcached too (the same log).
    readonly memcachedFront: MemcachedFrontEnd | undefined,
    private readonly memcachedBackend: MemcachedBackend | undefined,
  ) {}

  static async start(config: RedisProxyConfig, nodeId: number, options: RedisReplicaOptions = {}): Promise<RedisReplica> {
    const log = options.log ?? ((line: string) => console.error(`mu-proxy ${nodeId}: ${line}`));
    const addresses = config.replicas[nodeId];
    if (addresses === undefined) throw new Error(`replica ${nodeId} has no redis/redisBackend addresses in the configuration`);
    const backend = await RedisBackend.connect({ ...addresses.backend, name: `replica ${nodeId}` });
    let cache: { backend: MemcachedBackend; itemSizeMax: number } | undefined;
    try {
      if (config.memcachedReplicas[nodeId] !== undefined) cache = await openMemcachedBackend(config, nodeId, log);
      const table = CommandTable.fromCommandReply(await query(backend, 'COMMAND'));
      const databases = Number((await query(backend, 'CONFIG', 'GET', 'databases') as string[])[1] ?? 16);
      const policy = (await query(backend, 'CONFIG', 'GET', 'maxmemory-policy') as string[])[1];
      if (policy !== 'noeviction') {
        // Eviction happens per server: the replicas would drift apart.
        throw new Error(`the backend's maxmemory-policy is ${policy}; mu-proxy needs noeviction (CONFIG SET maxmemory-policy noeviction)`);
      }
      const info = String(await query(backend, 'INFO', 'server'));
      const version = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
      const keyspace = String(await query(backend, 'INFO', 'keyspace'));
      if (/^db\d+:keys=/m.test(keyspace)) {
        if (!config.flushBackendOnStart) {
          throw new Error(
            `the backend at ${describeEndpoint(addresses.backend)} is not empty; a replica's backend holds the cluster's replicated state only: empty it, or set redis.flushBackendOnStart`,
          );
        }
        await query(backend, 'FLUSHALL');
        log('flushed the backend (redis.flushBackendOnStart)');
      }
      const access = AccessControl.fromConfig(config.front.requirepass, config.users);
      const unknown = access.unknownInRules({
        categories: new Set(table.list().flatMap((info) => [...info.categories])),
        commands: new Set(table.list().map((info) => info.name)),
      });
      if (unknown.length > 0) throw new Error(`redis.users names what this redis-server does not have: ${unknown.join('; ')}`);
      const peerAuth = new PeerAuthenticator(config.cluster.secret, nodeId);
      const member = await ClusterMember.start(config.cluster, nodeId, { log });
      // One channel for the apply stream and the reads: one FIFO order, one selected db.
      const channel = new BackendChannel(backend);
      const keyWatches = new KeyWatchRegistry(table);
      const pipeline = new ApplyPipeline(member.replica, channel, keyWatches);
      const resync = new Resynchroniser({
        replica: member.replica,
        pipeline,
        channel,
        backendAddress: addresses.backend,
        clientAddress: (id) => clientAddress(config, id),
        log,
        greeting: () => encodeCommand(['MU', 'PEER', ...peerAuth.arguments('peer', 'default')]),
      });
      if (cache === undefined) {
        pipeline.on('backend-failed', (error) => resync.start(error.message));
        member.replica.on('needs-state-transfer', () => resync.start('this replica fell behind the recycled log'));
      } else {
        // The snapshot would bring the redis-server back, not the memcached.
        takeOutOnLoss(member.replica, pipeline, log);
      }
      const proposer = new Proposer(member.replica, pipeline);
      const front = new FrontEnd(
        { ...config.front, host: addresses.listen.host, port: addresses.listen.port },
        proposer,
        channel,
        keyWatches,
        table,
        databases,
        version,
        addresses.backend,
        { redisAddress: (id) => clientAddress(config, id) },
        access,
        peerAuth,
      );
      front.resyncReport = () => resync.report();
      front.linkReport = () => member.linkReport();
      front.log = log;
      await front.listen();
      log(`serving Redis clients on ${addresses.listen.host}:${front.port} (backend ${describeEndpoint(addresses.backend)}, redis ${version}, ${table.size} commands)`);
      const memcachedFront = cache === undefined ? undefined : await startMemcachedFrontEnd(config, nodeId, proposer, cache.backend, cache.itemSizeMax, log);
      const fronts: MetricsFront[] = [{ prefix: '', clients: () => front.clients, counters: front.counters }];
      if (memcachedFront !== undefined) fronts.push(memcachedFront.metricsFront());
      const metrics = await startMetrics(
        { replica: member.replica, pipeline, backendPending: () => channel.pending + (cache?.backend.pending ?? 0), fronts },
        addresses.metrics,
        log,
      );
      return new RedisReplica(member, channel, pipeline, front, metrics, resync, memcachedFront, cache?.backend);
    } catch (error) {
      await backend.close();
      await cache?.backend.close();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const metrics = this.metrics;
    if (metrics !== undefined) await new Promise<void>((resolve) => metrics.close(() => resolve()));
    this.resync.stop();
    await this.front.close();
    await this.memcachedFront?.close();
    await this.member.stop();
    await this.pipeline.close();
    await this.channel.backend.close();
    await this.memcachedBackend?.close();
  }
}
