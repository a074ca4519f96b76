// Test support: a Redis proxy cluster in this process: N redis-servers (real; the proxies
// reach them on Unix sockets, as a deployment would, ProxyProcesses covers TCP; the tests
// may also use their TCP ports) and N RedisReplica instances over shm (each with its own
// engine thread), plus helpers to find the leader and compare the backends' digests.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';
import { validateRedisProxyConfig } from '../redis/config.js';
import { RedisReplica } from '../redis/redis_replica.js';
import { freePort } from '../../mu/testing/free_port.js';
import { startAll, startInTurn } from '../../mu/testing/start_all.js';

export { freePort };

export interface RedisClusterOptions {
  replicas?: number;
  redis?: Record<string, unknown>; // the config file's "redis" section
  engine?: Record<string, unknown>; // merged over the "engine" section below
  verbose?: boolean;
}

export class RedisCluster {
  private constructor(
    readonly servers: RedisServerProcess[],
    readonly replicas: Array<RedisReplica | undefined>,
    readonly proxyPorts: number[],
    readonly metricsPorts: number[],
    readonly clusterName: string,
    private readonly directory: string,
  ) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const count = options.replicas ?? 3;
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-redis-cluster-'));
    const servers = await startInTurn(count, (id) => RedisServerProcess.start({ unixSocket: serverSocket(directory, id), extraArgs: SERVER_ARGS }));
    const proxyPorts: number[] = [];
    const controlPorts: number[] = [];
    const metricsPorts: number[] = [];
    for (let i = 0; i < count; i++) {
      proxyPorts.push(await freePort());
      controlPorts.push(await freePort());
      metricsPorts.push(await freePort());
    }
    const clusterName = `redis-test-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    const config = validateRedisProxyConfig(
      {
        cluster: clusterName,
        secret: crypto.randomBytes(24).toString('hex'),
        fabric: { backend: 'shm' },
        // Several engines, redis-servers and mocha share two cores, and these tests are
        // about the front end, not failover: a 100 ms window keeps one leader throughout.
        engine: { logBytes: 16 << 20, failureDetector: { readIntervalUs: 5000, failureReads: 20 }, ...options.engine },
        redis: options.redis ?? {},
        replicas: servers.map((server, id) => ({
          id,
          control: `127.0.0.1:${controlPorts[id]}`,
          redis: `127.0.0.1:${proxyPorts[id]}`,
          redisBackend: server.socketPath as string,
          metrics: `127.0.0.1:${metricsPorts[id]}`,
        })),
      },
      {},
    );
    const log = options.verbose === true ? undefined : () => {};
    const leftovers = { stop: async () => removeClusterFiles(directory, clusterName) };
    const replicas = await startAll(
      servers.map((_, id) => RedisReplica.start(config, id, log === undefined ? {} : { log })),
      [...servers, leftovers],
    );
    return new RedisCluster(servers, replicas, proxyPorts, metricsPorts, clusterName, directory);
  }

  // A fresh redis-server for replica `id`, where the one it replaces listened (stop that one first).
  async startServer(id: number): Promise<RedisServerProcess> {
    const port = (this.servers[id] as RedisServerProcess).port;
    const server = await RedisServerProcess.start({ port, unixSocket: serverSocket(this.directory, id), extraArgs: SERVER_ARGS });
    this.servers[id] = server;
    return server;
  }

  // The replica that leads once exactly one does and every replica has granted it its log.
  async leader(timeoutMs = 20000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.replicas.filter((replica): replica is RedisReplica => replica !== undefined);
      const leaders = live.filter((replica) => replica.member.replica.isLeader);
      if (leaders.length === 1) {
        const id = leaders[0]?.member.replica.nodeId as number;
        if (live.every((replica) => replica.member.replica.role.leaderId === id)) return id;
      }
      if (Date.now() > deadline) throw new Error('no settled leader');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  // A raw RESP connection to replica `id`'s proxy port (or, with `backend`, to its
  // redis-server directly).
  connect(id: number, backend = false): Promise<RedisBackend> {
    const port = backend ? (this.servers[id] as RedisServerProcess).port : (this.proxyPorts[id] as number);
    return RedisBackend.connect({ port });
  }

  // Every backend's DEBUG DIGEST, once they agree (or after the timeout, as they are).
  async digests(timeoutMs = 10000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const digests: string[] = [];
      for (const server of this.servers) {
        const client = await RedisBackend.connect({ port: server.port });
        digests.push((await client.send(encodeCommand(['DEBUG', 'DIGEST']))).toString().trim());
        await client.close();
      }
      if (digests.every((digest) => digest === digests[0]) || Date.now() > deadline) return digests;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.replicas.map((replica) => replica?.stop()));
    await Promise.all(this.servers.map((server) => server.stop()));
    removeClusterFiles(this.directory, this.clusterName);
  }
}

const SERVER_ARGS = ['--enable-debug-command', 'local'];

function serverSocket(directory: string, id: number): string {
  return path.join(directory, `redis-${id}.sock`);
}

function removeClusterFiles(directory: string, clusterName: string): void {
  fs.rmSync(directory, { recursive: true, force: true });
  fs.rmSync(path.join('/dev/shm', `mu-${clusterName}`), { recursive: true, force: true });
}
