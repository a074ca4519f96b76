// mu-proxy demo: what `npm run demo` shows (`-- --backend memcached`: the same with
// memcached, demo_memcached.ts). On this host: three redis-servers, each on a Unix
// socket (and a free port, for a look with redis-cli), three mu-proxy replicas in front of them over the shm fabric (separate
// processes), a short workload through the leader with latency percentiles, then the
// leader is stopped (SIGSTOP) and the time until a write succeeds again is measured,
// and finally every replica's DEBUG DIGEST is compared. --keep leaves it all running.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import { RedisServerProcess } from '../adapters/redis/redis_server_process.js';
import { freePort } from '../mu/testing/free_port.js';

const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.ts');
// The replicas run the same TypeScript through tsx, found from this file (not the cwd).
const tsxLoader = pathToFileURL(path.join(path.dirname(cliPath), '..', 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export function say(line: string): void {
  console.log(`demo: ${line}`);
}

async function muStatus(port: number): Promise<Record<string, unknown> | undefined> {
  try {
    const client = await RedisBackend.connect({ port, connectTimeoutMs: 500 });
    const raw = (await client.send(encodeCommand(['MU', 'STATUS']))).toString();
    await client.close();
    if (!raw.startsWith('$')) return undefined;
    return JSON.parse(raw.slice(raw.indexOf('\n') + 1)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function waitForLeader(ports: number[], among: number[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const id of among) {
      const status = await muStatus(ports[id] as number);
      if (status?.['role'] === 'leader') return id;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no leader among replicas ${among.join(', ')} after ${timeoutMs} ms`);
}

export function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? NaN;
}

export async function runDemo(args: string[]): Promise<number> {
  const backendAt = args.indexOf('--backend');
  const backend = backendAt >= 0 ? args[backendAt + 1] : 'redis';
  if (backend === 'memcached') return (await import('./demo_memcached.js')).runMemcachedDemo(args);
  if (backend !== 'redis') {
    say(`--backend must be redis or memcached, not ${backend}`);
    return 2;
  }
  const keep = args.includes('--keep');
  const requestsAt = args.indexOf('--requests');
  const requests = requestsAt >= 0 ? Number(args[requestsAt + 1]) : 20000;
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-proxy-demo-'));
  const servers: RedisServerProcess[] = [];
  const proxies: ChildProcess[] = [];
  const cluster = `demo-${crypto.randomBytes(3).toString('hex')}`;
  const cleanUp = async () => {
    for (const proxy of proxies) {
      proxy.kill('SIGCONT');
      proxy.kill('SIGTERM');
    }
    await Promise.all(proxies.map((proxy) => new Promise((resolve) => (proxy.exitCode !== null ? resolve(null) : proxy.once('exit', resolve)))));
    await Promise.all(servers.map((server) => server.stop()));
    fs.rmSync(directory, { recursive: true, force: true });
    fs.rmSync(path.join('/dev/shm', `mu-${cluster}`), { recursive: true, force: true });
  };
  try {
    say('starting three redis-servers');
    // DEBUG DIGEST (the consistency check) must be allowed from local connections.
    for (let i = 0; i < 3; i++) servers.push(await RedisServerProcess.start({ unixSocket: true, extraArgs: ['--enable-debug-command', 'local'] }));
    const controlPorts = [await freePort(), await freePort(), await freePort()];
    const proxyPorts = [await freePort(), await freePort(), await freePort()];
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(path.join(directory, 'secret'), crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    fs.writeFileSync(
      configPath,
      JSON.stringify(
        {
          cluster,
          secretFile: path.join(directory, 'secret'),
          fabric: { backend: 'shm' },
          // A 20 ms detection window: this demo's six threads may share two cores.
          engine: { logBytes: 64 << 20, failureDetector: { readIntervalUs: 2000, failureReads: 10 } },
          redis: { readMode: 'linearizable' },
          replicas: [0, 1, 2].map((id) => ({
            id,
            control: `127.0.0.1:${controlPorts[id]}`,
            redis: `127.0.0.1:${proxyPorts[id]}`,
            redisBackend: servers[id]?.socketPath,
          })),
        },
        null,
        2,
      ),
    );
    say(`starting three mu-proxy replicas (config ${configPath})`);
    for (let id = 0; id < 3; id++) {
      const child = spawn(process.execPath, ['--import', tsxLoader, cliPath, 'start', '--config', configPath, '--id', String(id)], {
        stdio: ['ignore', 'inherit', 'pipe'],
      });
      child.stderr?.on('data', () => {}); // replica logs stay quiet in the demo
      proxies.push(child);
    }
    const leader = await waitForLeader(proxyPorts, [0, 1, 2], 60000);
    say(`replica ${leader} leads`);

    const client = await RedisBackend.connect({ port: proxyPorts[leader] as number });
    const latenciesUs: number[] = [];
    const started = Date.now();
    for (let i = 0; i < requests; i++) {
      const before = process.hrtime.bigint();
      const answer = (await client.send(encodeCommand(['SET', `key:${i % 1000}`, `value-${i}`]))).toString();
      latenciesUs.push(Number(process.hrtime.bigint() - before) / 1000);
      if (answer !== '+OK\r\n') throw new Error(`SET answered ${answer.trim()}`);
      if (i > 0 && i % Math.max(1, Math.floor(requests / 4)) === 0) say(`${i} SETs done`);
    }
    const seconds = (Date.now() - started) / 1000;
    latenciesUs.sort((a, b) => a - b);
    say(
      `${requests} SETs through the leader, one at a time: p50 ${percentile(latenciesUs, 0.5).toFixed(1)} us, p90 ${percentile(latenciesUs, 0.9).toFixed(1)} us, p99 ${percentile(latenciesUs, 0.99).toFixed(1)} us (${Math.round(requests / seconds)} per second)`,
    );
    const read = (await client.send(encodeCommand(['GET', 'key:7']))).toString().split('\r\n')[1];
    say(`GET key:7 -> ${read}`);
    await client.close();

    say(`stopping the leader's process (SIGSTOP replica ${leader})`);
    const proxy = proxies[leader] as ChildProcess;
    proxy.kill('SIGSTOP');
    const stoppedAt = process.hrtime.bigint();
    const others = [0, 1, 2].filter((id) => id !== leader);
    let writtenBy: number | undefined;
    while (writtenBy === undefined) {
      for (const id of others) {
        try {
          const other = await RedisBackend.connect({ port: proxyPorts[id] as number, connectTimeoutMs: 200 });
          const answer = (await other.send(encodeCommand(['SET', 'after-failover', 'yes']))).toString();
          await other.close();
          if (answer === '+OK\r\n') writtenBy = id;
        } catch {
          // not answering yet
        }
      }
      if (writtenBy === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const unavailableMs = Number(process.hrtime.bigint() - stoppedAt) / 1e6;
    say(`replica ${writtenBy} took over: writes were unavailable for ${unavailableMs.toFixed(1)} ms (detection window 20 ms)`);
    proxy.kill('SIGCONT');
    say(`resumed replica ${leader}: it rejoins as a follower`);

    // Every replica's backend must reach the same state.
    const deadline = Date.now() + 30000;
    let digests: string[] = [];
    for (;;) {
      digests = [];
      for (const server of servers) {
        const backend = await RedisBackend.connect({ port: server.port });
        digests.push((await backend.send(encodeCommand(['DEBUG', 'DIGEST']))).toString().trim());
        await backend.close();
      }
      if (!digests.every((digest) => /^\+[0-9a-f]{40}$/.test(digest))) {
        say(`DEBUG DIGEST failed: ${digests.join(' | ')}`);
        return 1;
      }
      if (digests.every((digest) => digest === digests[0])) break;
      if (Date.now() > deadline) {
        say(`digests differ: ${digests.join(' ')}`);
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    say(`all three redis-servers have the same DEBUG DIGEST (${digests[0]?.replace(/^\+/, '')})`);
    if (keep) {
      say('the cluster keeps running (Ctrl-C to stop it). Connect with:');
      for (let id = 0; id < 3; id++) say(`  redis-cli -p ${proxyPorts[id]}    # replica ${id}`);
      say(`  node --import tsx proxy/cli.ts status --config ${configPath}`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    return 0;
  } finally {
    await cleanUp();
  }
}
