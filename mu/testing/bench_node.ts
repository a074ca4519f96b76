// npm run bench:node: propose-to-commit latency measured in JavaScript (three member
// processes over shm: the leader's Replica.propose() to its promise resolving, one
// command at a time), beside mu-bench's native replication latency measured in the same
// run, alternately, several times (this machine is shared and noisy: compare within a
// round); then throughput with batching. Prints figures; asserts nothing
// (docs/PERFORMANCE.md records them).
//
//   node --import tsx mu/testing/bench_node.ts [--rounds 3] [--count 3000]
//        [--throughput 200000] [--idle backoff|yield|spin] [--poll-us 20] [--replicas 3]
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MemberCluster } from './member_cluster.js';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? NaN;
}

const rounds = Number(flag('--rounds', '3'));
const count = Number(flag('--count', '3000'));
const throughputCount = Number(flag('--throughput', '200000'));
const idleStrategy = flag('--idle', 'backoff') as 'backoff' | 'yield' | 'spin';
const pollUs = Number(flag('--poll-us', '20'));
// --replicas 1 measures the Node boundary alone (no followers competing for the cores);
// the native figure still comes from mu-bench's three replicas.
const replicas = Number(flag('--replicas', '3'));

function nativeP50Us(): number {
  const output = execFileSync(path.join(repositoryRoot, 'build/Release/mu-bench'), ['latency', '--iterations', String(count)], {
    encoding: 'utf8',
  });
  const line = output.split('\n').find((text) => /^\s*64 B\s/.test(text)) ?? '';
  return Number(/replication p50\s+(\d+) ns/.exec(line)?.[1] ?? NaN) / 1000;
}

console.log(
  `bench:node: ${replicas} member process(es) on shm (Node main thread + engine thread each), 64-byte commands, idle ${idleStrategy}, poll after submit ${pollUs} us`,
);
const cluster = await MemberCluster.start({ idleStrategy, pollAfterSubmitUs: pollUs, replicas });
try {
  const leader = await cluster.leader();
  const member = cluster.member(leader);
  await member.request({ op: 'latency', count: 500, bytes: 64 }, 120000); // warm-up
  const gaps: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const native = nativeP50Us();
    const reply = await member.request({ op: 'latency', count, bytes: 64 }, 600000);
    const samples = (reply['samplesUs'] as number[]).slice().sort((a, b) => a - b);
    const js = percentile(samples, 0.5);
    gaps.push(js - native);
    console.log(
      `  round ${round}: native mu-bench p50 ${native.toFixed(2)} us | JS propose->resolved p50 ${js.toFixed(2)} us p90 ${percentile(samples, 0.9).toFixed(2)} us p99 ${percentile(samples, 0.99).toFixed(2)} us | JS above native ${(js - native).toFixed(2)} us`,
    );
  }
  gaps.sort((a, b) => a - b);
  console.log(`  median over ${rounds} rounds: JS p50 above native p50 by ${percentile(gaps, 0.5).toFixed(2)} us`);
  const throughput = await member.request({ op: 'throughput', count: throughputCount, bytes: 64, window: 4096 }, 600000);
  const seconds = throughput['seconds'] as number;
  const acked = throughput['acked'] as number;
  console.log(
    `  JS throughput: ${Math.round(acked / seconds).toLocaleString('en-US')} commands/s committed (${acked} in ${seconds.toFixed(2)} s, up to 4096 in flight)`,
  );
} finally {
  await cluster.stop();
}
