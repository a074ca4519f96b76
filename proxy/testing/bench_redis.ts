// npm run bench:redis: SET latency and throughput of the Redis proxy beside the systems it
// is compared with, all in one run on this machine (it is shared and noisy: compare only
// figures from the same run). The systems, one after another:
//   direct        one redis-server, no proxy
//   proxy x1      mu-proxy with one replica (one redis-server behind it)
//   proxy x3      mu-proxy with three replicas, measured at its leader
//   proxy3tcp     the same, its proxies reaching their redis-servers over TCP, not Unix sockets
//   redis+WAIT    a redis-server with two replicas (--replicaof); each operation is
//                 SET then WAIT 2 0, sent together, and counts once both replies are in
//   twemproxy     nutcracker in front of one redis-server
//   nodepass      a Node process copying bytes to one redis-server and back (node_passthrough.ts):
//                 the floor for any proxy on Node, for reference
// Clients reach every system over TCP. The proxies (mu-proxy, twemproxy, nodepass) reach
// their own redis-server on a Unix socket, as a replica's local backend is best run;
// proxy3tcp shows what that is worth.
// For each: a single-client closed loop (one SET at a time, each round trip timed; p50,
// p90, p99), a closed loop of 50 clients of our own (ops/s, the only throughput figure
// that applies to redis+WAIT; and the CPU time per operation of the main threads of the
// processes in front of the redis-servers (mu-proxy's event loops, nutcracker, the Node
// passthrough), and of all the system's processes and threads, which a noisy machine
// disturbs far less than latency) and redis-benchmark -t set -c 50 -P 1 (requests/s; not for
// redis+WAIT, which it cannot drive). Then the ratios the targets need, PASS/FAIL. Replies
// other than +OK (and :2 for WAIT) are counted: a figure measured while some replies were
// errors is marked '!<n>err' and a target that uses it says INVALID; notes list them.
//
//   node --import tsx proxy/testing/bench_redis.ts [--requests 5000] [--clients 50]
//        [--ops <requests*4>] [--warmup 500] [--systems direct,proxy1,proxy3,proxy3tcp,wait,twemproxy]
//        [--twemproxy-connections 1]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { ProxyProcesses } from './proxy_processes.js';
import { freePort } from './redis_cluster.js';

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

function positiveInt(name: string, fallback: number): number {
  const value = Number(flag(name, String(fallback)));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
}

const requests = positiveInt('--requests', 5000);
const clients = positiveInt('--clients', 50);
const concurrentOps = positiveInt('--ops', requests * 4);
const warmup = Number(flag('--warmup', '500'));
const twemproxyConnections = positiveInt('--twemproxy-connections', 1);
const ALL_SYSTEMS = ['direct', 'proxy1', 'proxy3', 'proxy3tcp', 'wait', 'twemproxy', 'nodepass'] as const;
type SystemId = (typeof ALL_SYSTEMS)[number];
const selected = flag('--systems', ALL_SYSTEMS.join(','))
  .split(',')
  .map((name) => name.trim())
  .filter((name) => name !== '');
for (const name of selected) {
  if (!(ALL_SYSTEMS as readonly string[]).includes(name)) throw new Error(`unknown system ${name}; known: ${ALL_SYSTEMS.join(', ')}`);
}
const systems = ALL_SYSTEMS.filter((id) => selected.includes(id));

const NUTCRACKER = '/usr/sbin/nutcracker';
const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';
const VALUE = 'v'.repeat(16);
const KEYS = 1000;
const LABELS: Record<SystemId, string> = {
  direct: 'direct redis-server',
  proxy1: 'proxy x1',
  proxy3: 'proxy x3 (leader)',
  proxy3tcp: 'proxy x3, TCP to redis-servers',
  wait: 'redis+2 replicas, SET+WAIT 2 0',
  twemproxy: 'twemproxy -> redis-server',
  nodepass: 'node passthrough -> redis-server',
};

// Leader changes seen between the phases of a proxy system (each phase measures at the
// leader of the moment; replies refused during a change show as errors of that phase).
const leaderChanges: string[] = [];

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// Encoded once: SET key:<i> <16-byte value> for the KEYS keys, and WAIT 2 0.
const SET_COMMANDS = Array.from({ length: KEYS }, (_, i) => encodeCommand(['SET', `key:${i}`, VALUE]));
const WAIT_COMMAND = encodeCommand(['WAIT', '2', '0']);
const OK = '+OK\r\n';
const WAIT_OK = ':2\r\n';

// Replies that were not what a SET (or WAIT 2 0) should answer, per system.
class Oddities {
  count = 0;
  readonly samples = new Map<string, number>();
  note(what: string): void {
    this.count++;
    this.samples.set(what, (this.samples.get(what) ?? 0) + 1);
  }
}

function checkReplies(replies: Buffer[], withWait: boolean, odd: Oddities): void {
  const set = replies[0]?.toString('latin1') ?? '(none)';
  if (set !== OK) odd.note(`SET answered ${JSON.stringify(set.slice(0, 120))}`);
  if (withWait) {
    const wait = replies[1]?.toString('latin1') ?? '(none)';
    if (wait !== WAIT_OK) odd.note(`WAIT 2 0 answered ${JSON.stringify(wait.slice(0, 120))}`);
  }
}

// One operation: SET, or SET then WAIT 2 0 in one write (the pair's replies both awaited).
async function operation(client: RedisBackend, i: number, withWait: boolean, odd: Oddities): Promise<void> {
  const set = SET_COMMANDS[i % KEYS]!;
  if (withWait) checkReplies(await client.sendMany([set, WAIT_COMMAND]), true, odd);
  else checkReplies([await client.send(set)], false, odd);
}

interface Latency {
  p50: number;
  p90: number;
  p99: number;
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? NaN;
}

async function singleClient(port: number, withWait: boolean, odd: Oddities): Promise<Latency> {
  const client = await RedisBackend.connect({ port });
  try {
    for (let i = 0; i < warmup; i++) await operation(client, i, withWait, odd);
    const samples = new Float64Array(requests);
    for (let i = 0; i < requests; i++) {
      const start = process.hrtime.bigint();
      await operation(client, i, withWait, odd);
      samples[i] = Number(process.hrtime.bigint() - start) / 1000;
    }
    samples.sort();
    return { p50: percentile(samples, 0.5), p90: percentile(samples, 0.9), p99: percentile(samples, 0.99) };
  } finally {
    await client.close();
  }
}

// `clients` connections, each a closed loop, sharing `concurrentOps` operations; ops/s.
async function manyClients(port: number, withWait: boolean, odd: Oddities): Promise<number> {
  const connections = await Promise.all(Array.from({ length: clients }, () => RedisBackend.connect({ port })));
  try {
    // A short warm-up on every connection.
    await Promise.all(connections.map(async (client, c) => {
      for (let i = 0; i < 10; i++) await operation(client, c * 10 + i, withWait, odd);
    }));
    let next = 0;
    const start = process.hrtime.bigint();
    await Promise.all(
      connections.map(async (client) => {
        for (let i = next++; i < concurrentOps; i = next++) await operation(client, i, withWait, odd);
      }),
    );
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return concurrentOps / seconds;
  } finally {
    await Promise.all(connections.map((client) => client.close()));
  }
}

interface BenchmarkResult {
  rps: number;
  notes: string[];
  /** Lines "Error from server" (redis-benchmark exits at the first). */
  errors: number;
}

async function redisBenchmark(port: number): Promise<BenchmarkResult> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', 'set', '-n', String(requests * 4), '-c', String(clients), '-P', '1', '-d', '16', '-q'];
  const child = spawn(REDIS_BENCHMARK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  // -q prints progress lines ending in \r, then "SET: <n> requests per second, p50=..."
  const lines = (stdout + '\n' + stderr)
    .split(/[\r\n]+/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const matches = [...stdout.matchAll(/SET: ([\d.]+) requests per second/g)];
  const rps = Number(matches.at(-1)?.[1] ?? NaN);
  const notes = lines.filter((line) => !/^SET: (rps=|[\d.]+ requests per second)/.test(line));
  // redis-benchmark 7 stops at the first error reply ("Error from server: ...", exit 1).
  const errors = notes.filter((line) => /^Error from server/i.test(line)).length;
  if (code !== 0) notes.push(`redis-benchmark exited with ${code}`);
  return { rps, notes, errors };
}

async function waitForPing(port: number, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    try {
      const client = await RedisBackend.connect({ port, connectTimeoutMs: 500 });
      try {
        const reply = await Promise.race([client.send(encodeCommand(['PING'])), sleep(500).then(() => Buffer.from('(timed out)'))]);
        if (reply.toString('latin1') === '+PONG\r\n') return;
        last = `PING answered ${JSON.stringify(reply.toString('latin1'))}`;
      } finally {
        await client.close();
      }
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what} on port ${port} did not answer PING within ${timeoutMs} ms (${last})`);
    await sleep(50);
  }
}

async function info(port: number, section: string): Promise<string> {
  const client = await RedisBackend.connect({ port });
  try {
    return (await client.send(encodeCommand(['INFO', section]))).toString('latin1');
  } finally {
    await client.close();
  }
}

interface Running {
  /** The port to measure; for the proxy, its leader's, found again before each phase. */
  port(): Promise<number>;
  withWait: boolean;
  describe: string;
  /** The system's processes: those in front of the redis-servers, and the redis-servers. */
  pids(): { proxy: number[]; servers: number[] };
  stop(): Promise<void>;
}

// CPU time (user + system) the processes have used, in microseconds, from /proc: every
// thread's, or with `mainThread` only the main thread's (for mu-proxy, the event loop
// that runs the front end; its engine thread idles by its own strategy, busy or not). A
// process that is gone counts 0. CPU per operation is far steadier than latency on a
// shared machine: it measures the work, not the waiting.
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function cpuMicros(pids: number[], mainThread = false): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) in parentheses: utime and
      // stime are the 14th and 15th of the line, the 12th and 13th after ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return (ticks * 1e6) / ticksPerSecond;
}

async function startDirect(): Promise<Running> {
  const server = await RedisServerProcess.start();
  return { port: async () => server.port, withWait: false, describe: `redis-server :${server.port}`, pids: () => ({ proxy: [], servers: [server.pid] }), stop: () => server.stop() };
}

async function startProxy(replicas: number, backendsOver: 'tcp' | 'unix' = 'unix'): Promise<Running> {
  // A 100 ms detection window: the benchmark loads both cores fully, and it measures the
  // steady state, not failover (a 20 ms window tripped under this load).
  const cluster = await ProxyProcesses.start(replicas, { readIntervalUs: 5000, failureReads: 20 }, backendsOver);
  try {
    const leader = await cluster.leader();
    const port = cluster.proxyPorts[leader]!;
    await waitForPing(port, `proxy replica ${leader}`);
    let lastLeader = leader;
    return {
      port: async () => {
        const now = await cluster.leader();
        if (now !== lastLeader) leaderChanges.push(`proxy x${replicas}: the leader moved from replica ${lastLeader} to replica ${now}`);
        lastLeader = now;
        return cluster.proxyPorts[now]!;
      },
      withWait: false,
      pids: () => ({ proxy: cluster.proxies.flatMap((child) => (child?.pid === undefined ? [] : [child.pid])), servers: cluster.servers.map((server) => server.pid) }),
      describe: `${replicas} mu-proxy process(es) over shm, leader replica ${leader} at :${port}, redis-servers over ${backendsOver === 'unix' ? 'Unix sockets' : 'TCP'}`,
      stop: () => cluster.stop(),
    };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

async function startRedisWithReplicas(): Promise<Running> {
  const servers: RedisServerProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((server) => server.stop()));
  };
  try {
    const master = await RedisServerProcess.start();
    servers.push(master);
    for (let i = 0; i < 2; i++) servers.push(await RedisServerProcess.start({ extraArgs: ['--replicaof', '127.0.0.1', String(master.port)] }));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const masterInfo = await info(master.port, 'replication');
      const online = (masterInfo.match(/^slave\d+:.*state=online/gm) ?? []).length;
      const replicaInfos = await Promise.all(servers.slice(1).map((server) => info(server.port, 'replication')));
      if (
        masterInfo.includes('\r\nconnected_slaves:2\r\n') &&
        online === 2 &&
        replicaInfos.every((text) => text.includes('\r\nmaster_link_status:up\r\n') && !text.includes('\r\nmaster_sync_in_progress:1\r\n'))
      )
        break;
      if (Date.now() > deadline) throw new Error(`the replicas did not come in sync within 30 s:\n${masterInfo}`);
      await sleep(50);
    }
    return {
      port: async () => master.port,
      withWait: true,
      pids: () => ({ proxy: [], servers: servers.map((server) => server.pid) }),
      describe: `master :${master.port}, replicas :${servers[1]!.port} :${servers[2]!.port} (connected_slaves:2, master_link_status:up)`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function startTwemproxy(): Promise<Running> {
  const server = await RedisServerProcess.start({ unixSocket: true });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-bench-twemproxy-'));
  let child: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await server.stop();
    fs.rmSync(directory, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    const statsPort = await freePort();
    const configPath = path.join(directory, 'nutcracker.yml');
    fs.writeFileSync(
      configPath,
      [
        'bench:',
        `  listen: 127.0.0.1:${port}`,
        '  redis: true',
        '  hash: fnv1a_64',
        '  distribution: ketama',
        `  server_connections: ${twemproxyConnections}`,
        '  auto_eject_hosts: false',
        '  servers:',
        `   - ${server.socketPath}:1`,
        '',
      ].join('\n'),
    );
    const logPath = path.join(directory, 'nutcracker.log');
    try {
      execFileSync(NUTCRACKER, ['-t', '-c', configPath, '-o', logPath], { stdio: 'pipe' });
    } catch (error) {
      const log = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '';
      throw new Error(`nutcracker -t rejected ${configPath}: ${(error as Error).message}\n${log}`);
    }
    child = spawn(NUTCRACKER, ['-c', configPath, '-o', logPath, '-s', String(statsPort), '-a', '127.0.0.1', '-v', '4'], { stdio: 'ignore' });
    child.once('error', () => {});
    try {
      await waitForPing(port, 'nutcracker');
    } catch (error) {
      const log = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').split('\n').slice(-20).join('\n') : '';
      throw new Error(`${(error as Error).message}\n${log}`);
    }
    return {
      port: async () => port,
      withWait: false,
      pids: () => ({ proxy: child?.pid === undefined ? [] : [child.pid], servers: [server.pid] }),
      describe: `nutcracker :${port} (server_connections ${twemproxyConnections}) -> redis-server ${server.socketPath}`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function startNodePassthrough(): Promise<Running> {
  const server = await RedisServerProcess.start({ unixSocket: true });
  const port = await freePort();
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_passthrough.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(port), server.socketPath as string], { stdio: ['pipe', 'pipe', 'inherit'] });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin?.end();
      await exited;
    }
    await server.stop();
  };
  try {
    await waitForPing(port, 'node passthrough');
    return {
      port: async () => port,
      withWait: false,
      pids: () => ({ proxy: child.pid === undefined ? [] : [child.pid], servers: [server.pid] }),
      describe: `node passthrough :${port} -> redis-server ${server.socketPath}`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function start(id: SystemId): Promise<Running> {
  switch (id) {
    case 'nodepass':
      return startNodePassthrough();
    case 'direct':
      return startDirect();
    case 'proxy1':
      return startProxy(1);
    case 'proxy3':
      return startProxy(3);
    case 'proxy3tcp':
      return startProxy(3, 'tcp');
    case 'wait':
      return startRedisWithReplicas();
    case 'twemproxy':
      return startTwemproxy();
  }
}

interface Result {
  latency: Latency;
  opsPerSecond: number;
  /** CPU microseconds per operation of the own many-client loop: the proxies' main threads', everything's. */
  cpuPerOp: { proxy: number; all: number };
  benchmark: BenchmarkResult | undefined;
  /** Unexpected replies in the single-client loop and in the own many-client loop. */
  singleOdd: Oddities;
  manyOdd: Oddities;
}

const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
console.log(`command: ${[process.argv[0] ?? 'node', ...process.execArgv, ...process.argv.slice(1)].map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ')}`);
console.log(`nproc: ${nproc}   node ${process.version}   ${os.loadavg().map((load) => load.toFixed(2)).join(' ')} (loadavg)`);
console.log(
  `single client: ${requests} x SET key:<i%${KEYS}> <16-byte value> after ${warmup} warm-up | own ${clients}-client loop: ${concurrentOps} ops | redis-benchmark -t set -n ${requests * 4} -c ${clients} -P 1 -d 16 -q`,
);

const results = new Map<SystemId, Result>();
const started = Date.now();
let running: Running | undefined;
try {
  for (const id of systems) {
    const phase = Date.now();
    running = await start(id);
    console.log(`[${LABELS[id]}] ${running.describe} (up in ${((Date.now() - phase) / 1000).toFixed(1)} s)`);
    const singleOdd = new Oddities();
    const latency = await singleClient(await running.port(), running.withWait, singleOdd);
    const manyOdd = new Oddities();
    const { proxy: proxyPids, servers: serverPids } = running.pids();
    const cpuBefore = { proxyMain: cpuMicros(proxyPids, true), all: cpuMicros([...proxyPids, ...serverPids]) };
    const opsPerSecond = await manyClients(await running.port(), running.withWait, manyOdd);
    const operations = concurrentOps + clients * 10; // with the warm-up
    const cpuPerOp = {
      proxy: (cpuMicros(proxyPids, true) - cpuBefore.proxyMain) / operations,
      all: (cpuMicros([...proxyPids, ...serverPids]) - cpuBefore.all) / operations,
    };
    const benchmark = running.withWait ? undefined : await redisBenchmark(await running.port());
    await running.port(); // notes a leader change during the last phase
    results.set(id, { latency, opsPerSecond, cpuPerOp, benchmark, singleOdd, manyOdd });
    const current = running;
    running = undefined;
    await current.stop();
    console.log(`[${LABELS[id]}] measured in ${((Date.now() - phase) / 1000).toFixed(1)} s`);
  }
} finally {
  if (running !== undefined) await running.stop();
}

const pad = (text: string, width: number): string => text.padEnd(width);
const lpad = (text: string, width: number): string => text.padStart(width);
const fmt = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
console.log('');
console.log(
  `${pad('system', 32)} | ${lpad('1-client p50', 12)} ${lpad('p90', 8)} ${lpad('p99', 8)} us | ${lpad(`${clients}-client ops/s (own)`, 22)} | ${lpad('CPU us/op: front, all', 21)} | ${lpad('redis-benchmark rps', 19)}`,
);
console.log('-'.repeat(32 + 3 + 12 + 9 + 9 + 6 + 22 + 3 + 21 + 3 + 19));
// A figure measured while some replies were errors (a refused SET is answered fast) is
// marked with '!' and the error count; the targets that use it say INVALID.
const flagged = (text: string, errors: number): string => (errors > 0 ? `!${errors}err ${text}` : text);
for (const [id, result] of results) {
  const { latency } = result;
  const single = result.singleOdd.count;
  console.log(
    `${pad(LABELS[id], 32)} | ${lpad(flagged(fmt(latency.p50, 1), single), 12)} ${lpad(fmt(latency.p90, 1), 8)} ${lpad(fmt(latency.p99, 1), 8)}    | ${lpad(flagged(fmt(result.opsPerSecond), result.manyOdd.count), 22)} | ${lpad(`${fmt(result.cpuPerOp.proxy, 1)}, ${fmt(result.cpuPerOp.all, 1)}`, 21)} | ${lpad(result.benchmark === undefined ? 'n/a' : flagged(fmt(result.benchmark.rps), result.benchmark.errors), 19)}`,
  );
}

console.log('');
const proxy3 = results.get('proxy3');
const proxy1 = results.get('proxy1');
const wait = results.get('wait');
const twemproxy = results.get('twemproxy');
function target(label: string, ratio: number | undefined, limit: number, atMost: boolean, errors: number): void {
  if (ratio === undefined || !Number.isFinite(ratio)) {
    console.log(`${pad(label, 64)} n/a (system not measured)`);
    return;
  }
  const pass = atMost ? ratio <= limit : ratio >= limit;
  const verdict = errors > 0 ? `INVALID (${errors} error replies in the figures)` : pass ? 'PASS' : 'FAIL';
  console.log(`${pad(label, 64)} ${lpad(ratio.toFixed(3), 7)}  target ${atMost ? '<=' : '>='} ${limit.toFixed(2)}  ${verdict}`);
}
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : a / b);
const singleErrors = (...of: Array<Result | undefined>): number => of.reduce((sum, result) => sum + (result?.singleOdd.count ?? 0), 0);
const manyErrors = (...of: Array<Result | undefined>): number => of.reduce((sum, result) => sum + (result?.manyOdd.count ?? 0), 0);
target('3-replica p50 / redis+WAIT p50', ratio(proxy3?.latency.p50, wait?.latency.p50), 1, true, singleErrors(proxy3, wait));
target('3-replica p50 / twemproxy p50', ratio(proxy3?.latency.p50, twemproxy?.latency.p50), 1.25, true, singleErrors(proxy3, twemproxy));
target(
  `3-replica ${clients}-client ops/s / redis+WAIT ${clients}-client ops/s`,
  ratio(proxy3?.opsPerSecond, wait?.opsPerSecond),
  1,
  false,
  manyErrors(proxy3, wait),
);
target('3-replica p50 / 1-replica p50', ratio(proxy3?.latency.p50, proxy1?.latency.p50), 1.05, true, singleErrors(proxy3, proxy1));
const proxy3tcp = results.get('proxy3tcp');
const unixOverTcp = ratio(proxy3?.latency.p50, proxy3tcp?.latency.p50);
if (unixOverTcp !== undefined) console.log(`${pad('3-replica p50, Unix sockets / TCP to redis-servers (for reference)', 64)} ${lpad(unixOverTcp.toFixed(3), 7)}`);
const nodepass = results.get('nodepass');
const proxyOverNode = ratio(proxy1?.latency.p50, nodepass?.latency.p50);
if (proxyOverNode !== undefined) console.log(`${pad('1-replica p50 / node passthrough p50 (for reference)', 64)} ${lpad(proxyOverNode.toFixed(3), 7)}`);

const notes: string[] = [...leaderChanges];
for (const [id, result] of results) {
  for (const [what, count] of result.singleOdd.samples) notes.push(`${LABELS[id]}: single client: ${count} x ${what}`);
  for (const [what, count] of result.manyOdd.samples) notes.push(`${LABELS[id]}: ${clients} clients: ${count} x ${what}`);
  const lines = new Map<string, number>();
  for (const line of result.benchmark?.notes ?? []) lines.set(line, (lines.get(line) ?? 0) + 1);
  for (const [line, count] of lines) notes.push(`${LABELS[id]}: redis-benchmark: ${count > 1 ? `${count} x ` : ''}${line}`);
}
if (notes.length > 0) {
  console.log('');
  console.log('notes:');
  for (const note of notes) console.log(`  ${note}`);
}
console.log('');
console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s`);
