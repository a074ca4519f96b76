// npm run bench:memcached: set latency and throughput of the memcached proxy beside the
// systems it is compared with, all in one run on this machine (shared and noisy: compare
// only figures from the same run). The systems, one after another:
//   direct        one memcached, no proxy
//   proxy x1      mu-proxy with one replica
//   proxy x3      mu-proxy with three replicas, measured at its leader
//   twemproxy     nutcracker (memcached mode) in front of one memcached
// For each: a single-client closed loop (one set at a time, each round trip timed; p50,
// p90, p99) and a closed loop of 50 clients (ops/s). Then the issue's ratio (3-replica p50
// within 5% of 1-replica), PASS/FAIL. Replies other than STORED are counted and reported.
//
//   node --import tsx proxy/testing/bench_memcached.ts [--requests 5000] [--clients 50]
//        [--ops <requests*4>] [--warmup 500] [--systems direct,proxy1,proxy3,twemproxy]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { MemcachedServerProcess } from '../../adapters/memcached/memcached_server_process.js';
import { freePort } from '../../mu/testing/free_port.js';
import { MemcachedProcesses } from './memcached_processes.js';

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const requests = Number(flag('--requests', '5000'));
const clients = Number(flag('--clients', '50'));
const concurrentOps = Number(flag('--ops', String(requests * 4)));
const warmup = Number(flag('--warmup', '500'));
const ALL_SYSTEMS = ['direct', 'proxy1', 'proxy3', 'twemproxy'] as const;
type SystemId = (typeof ALL_SYSTEMS)[number];
const selected = flag('--systems', ALL_SYSTEMS.join(',')).split(',');
const systems = ALL_SYSTEMS.filter((id) => selected.includes(id));
const LABELS: Record<SystemId, string> = {
  direct: 'direct memcached',
  proxy1: 'proxy x1',
  proxy3: 'proxy x3 (leader)',
  twemproxy: 'twemproxy -> memcached',
};
const NUTCRACKER = '/usr/sbin/nutcracker';
const VALUE = 'v'.repeat(16);
const KEYS = 1000;
const SETS = Array.from({ length: KEYS }, (_, i) => Buffer.from(`set key:${i} 0 0 ${VALUE.length}\r\n${VALUE}\r\n`));

interface Running {
  port: number;
  stop: () => Promise<void>;
}

interface Result {
  p50: number;
  p90: number;
  p99: number;
  opsPerSecond: number;
  odd: number;
}

function percentile(sorted: Float64Array, fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? NaN;
}

async function measure(port: number): Promise<Result> {
  let odd = 0;
  const set = async (client: MemcachedBackend, i: number) => {
    if ((await client.send(SETS[i % KEYS] as Buffer, 'line')).toString('latin1') !== 'STORED\r\n') odd++;
  };
  const single = await MemcachedBackend.connect({ port });
  for (let i = 0; i < warmup; i++) await set(single, i);
  const samples = new Float64Array(requests);
  for (let i = 0; i < requests; i++) {
    const start = process.hrtime.bigint();
    await set(single, i);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  await single.close();
  samples.sort();
  const many = await Promise.all(Array.from({ length: clients }, () => MemcachedBackend.connect({ port })));
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    many.map(async (client) => {
      for (let i = next++; i < concurrentOps; i = next++) await set(client, i);
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await Promise.all(many.map((client) => client.close()));
  return { p50: percentile(samples, 0.5), p90: percentile(samples, 0.9), p99: percentile(samples, 0.99), opsPerSecond: concurrentOps / seconds, odd };
}

async function startDirect(): Promise<Running> {
  const server = await MemcachedServerProcess.start();
  return { port: server.port, stop: () => server.stop() };
}

async function startProxy(replicas: number): Promise<Running> {
  const cluster = await MemcachedProcesses.start(replicas);
  const leader = await cluster.leader();
  return { port: cluster.proxyPorts[leader] as number, stop: () => cluster.stop() };
}

async function startTwemproxy(): Promise<Running> {
  const server = await MemcachedServerProcess.start();
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-bench-twemproxy-'));
  const port = await freePort();
  const configPath = path.join(directory, 'nutcracker.yml');
  fs.writeFileSync(
    configPath,
    ['bench:', `  listen: 127.0.0.1:${port}`, '  redis: false', '  hash: fnv1a_64', '  distribution: ketama', '  auto_eject_hosts: false', '  servers:', `   - 127.0.0.1:${server.port}:1`, ''].join('\n'),
  );
  execFileSync(NUTCRACKER, ['-t', '-c', configPath], { stdio: 'pipe' });
  const child: ChildProcess = spawn(NUTCRACKER, ['-c', configPath, '-s', String(await freePort()), '-o', path.join(directory, 'nutcracker.log')], { stdio: 'ignore' });
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      const probe = await MemcachedBackend.connect({ port, connectTimeoutMs: 200 });
      await probe.close();
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
      await server.stop();
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}

function start(id: SystemId): Promise<Running> {
  switch (id) {
    case 'direct':
      return startDirect();
    case 'proxy1':
      return startProxy(1);
    case 'proxy3':
      return startProxy(3);
    case 'twemproxy':
      return startTwemproxy();
  }
}

console.log(`command: node --import tsx ${path.relative(process.cwd(), process.argv[1] ?? '')} ${process.argv.slice(2).join(' ')}`.trim());
console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB`);
const results = new Map<SystemId, Result>();
for (const id of systems) {
  const running = await start(id);
  try {
    results.set(id, await measure(running.port));
  } finally {
    await running.stop();
  }
}
console.log(`${'system'.padEnd(28)} | 1-client p50      p90      p99 us | ${clients}-client ops/s`);
for (const [id, result] of results) {
  console.log(
    `${LABELS[id].padEnd(28)} | ${result.p50.toFixed(1).padStart(12)} ${result.p90.toFixed(1).padStart(8)} ${result.p99.toFixed(1).padStart(8)}    | ${Math.round(result.opsPerSecond).toString().padStart(16)}${result.odd > 0 ? ` (${result.odd} replies other than STORED)` : ''}`,
  );
}
const one = results.get('proxy1');
const three = results.get('proxy3');
if (one !== undefined && three !== undefined) {
  const ratio = three.p50 / one.p50;
  console.log(`3-replica p50 / 1-replica p50    ${ratio.toFixed(3)}  target <= 1.05  ${ratio <= 1.05 ? 'PASS' : 'FAIL'}`);
}
const twemproxy = results.get('twemproxy');
if (three !== undefined && twemproxy !== undefined) console.log(`3-replica p50 / twemproxy p50     ${(three.p50 / twemproxy.p50).toFixed(3)}  (for reference)`);
