// Test support: a memcached proxy cluster in this process: N memcached servers (real, each
// on a Unix socket, as a deployment would run them; MemcachedProcesses covers TCP) and N
// MemcachedReplica instances over shm, plus helpers to find the leader and compare the
// backends' items.
import crypto from 'node:crypto';
import fs from 'node:fs';

import type { Endpoint } from '../../adapters/endpoint.js';
import { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { MemcachedServerProcess } from '../../adapters/memcached/memcached_server_process.js';
import { freePort } from '../../mu/testing/free_port.js';
import { startAll, startInTurn } from '../../mu/testing/start_all.js';
import { MemcachedReplica } from '../memcached/memcached_replica.js';
import { validateRedisProxyConfig } from '../redis/config.js';

export class MemcachedCluster {
  private constructor(
    readonly servers: MemcachedServerProcess[],
    readonly replicas: Array<MemcachedReplica | undefined>,
    readonly proxyPorts: number[],
    readonly metricsPorts: number[],
    readonly clusterName: string,
  ) {}

  static async start(options: { replicas?: number; memcached?: Record<string, unknown> } = {}): Promise<MemcachedCluster> {
    const count = options.replicas ?? 3;
    const servers = await startInTurn(count, () => MemcachedServerProcess.start({ unixSocket: true }));
    const proxyPorts: number[] = [];
    const controlPorts: number[] = [];
    const metricsPorts: number[] = [];
    for (let i = 0; i < count; i++) {
      proxyPorts.push(await freePort());
      controlPorts.push(await freePort());
      metricsPorts.push(await freePort());
    }
    const clusterName = `memcached-test-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    const config = validateRedisProxyConfig(
      {
        cluster: clusterName,
        secret: crypto.randomBytes(24).toString('hex'),
        fabric: { backend: 'shm' },
        // As RedisCluster: a 100 ms window keeps one leader on a shared two-core machine.
        engine: { logBytes: 16 << 20, failureDetector: { readIntervalUs: 5000, failureReads: 20 } },
        memcached: options.memcached ?? {},
        replicas: servers.map((server, id) => ({
          id,
          control: `127.0.0.1:${controlPorts[id]}`,
          memcached: `127.0.0.1:${proxyPorts[id]}`,
          memcachedBackend: server.socketPath as string,
          metrics: `127.0.0.1:${metricsPorts[id]}`,
        })),
      },
      {},
    );
    const shmFiles = { stop: async () => fs.rmSync(`/dev/shm/mu-${clusterName}`, { recursive: true, force: true }) };
    const replicas = await startAll(
      servers.map((_, id) => MemcachedReplica.start(config, id, { log: () => {} })),
      [...servers, shmFiles],
    );
    return new MemcachedCluster(servers, replicas, proxyPorts, metricsPorts, clusterName);
  }

  async leader(timeoutMs = 20000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.replicas.filter((replica): replica is MemcachedReplica => replica !== undefined);
      const leaders = live.filter((replica) => replica.member.replica.isLeader);
      if (leaders.length === 1) {
        const id = leaders[0]?.member.replica.nodeId as number;
        if (live.every((replica) => replica.member.replica.role.leaderId === id)) return id;
      }
      if (Date.now() > deadline) throw new Error('no settled leader');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  // Every backend's items as `key flags cas value` lines (lru_crawler metadump lists the
  // keys; gets reads them), once the backends agree (or after the timeout, as they are).
  async contents(timeoutMs = 10000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all: string[] = [];
      for (const server of this.servers) all.push(await dump(server.endpoint));
      if (all.every((one) => one === all[0]) || Date.now() > deadline) return all;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.replicas.map((replica) => replica?.stop()));
    await Promise.all(this.servers.map((server) => server.stop()));
    fs.rmSync(`/dev/shm/mu-${this.clusterName}`, { recursive: true, force: true });
  }
}

// One server's items, sorted: key, flags, CAS, expiry and value of every item.
export async function dump(endpoint: Endpoint): Promise<string> {
  const backend = await MemcachedBackend.connect(endpoint);
  try {
    const listing = (await backend.send(Buffer.from('lru_crawler metadump all\r\n'), 'listing')).toString('latin1');
    const keys = [...listing.matchAll(/^key=(\S+) exp=(-?\d+)/gm)].map((match) => [decodeURIComponent(match[1] as string), match[2] as string] as const);
    const lines: string[] = [];
    for (const [key, exp] of keys) {
      const value = (await backend.send(Buffer.from(`gets ${key}\r\n`, 'latin1'), 'values')).toString('latin1');
      lines.push(`${key} exp=${exp} ${value.replace(/\r\n/g, '|')}`);
    }
    return lines.sort().join('\n');
  } finally {
    await backend.close();
  }
}
