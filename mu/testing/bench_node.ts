// npm run bench:node: propose-to-commit latency measured in JavaScript (three member
// processes over shm: proposal at the leader's Replica.propose() to its promise resolving),
// beside mu-bench's native replication latency measured in the same run, and throughput
// with batching. Prints figures; asserts nothing (docs/PERFORMANCE.md records them).
//
//   node --import tsx mu/testing/bench_node.ts [--count 5000] [--throughput 200000]
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MemberCluster } from './member_cluster.js';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? NaN;
}

const count = flag('--count', 5000);
const throughputCount = flag('--throughput', 200000);

// The native figure first, in its own processes, so the two runs do not share the cores.
const nativeOutput = execFileSync(path.join(repositoryRoot, 'build/Release/mu-bench'), ['latency', '--iterations', String(count)], {
  encoding: 'utf8',
});
const nativeLine = nativeOutput.split('\n').find((line) => /^\s*64 B\s/.test(line)) ?? '';
const nativeP50Ns = Number(/replication p50\s+(\d+) ns/.exec(nativeLine)?.[1] ?? NaN);
const nativeP99Ns = Number(/p99\s+(\d+)/.exec(nativeLine)?.[1] ?? NaN);

const cluster = await MemberCluster.start();
try {
  const leader = await cluster.leader();
  const member = cluster.member(leader);
  await member.request({ op: 'latency', count: 500, bytes: 64 }, 120000); // warm-up
  const reply = await member.request({ op: 'latency', count, bytes: 64 }, 600000);
  const samples = (reply['samplesUs'] as number[]).slice().sort((a, b) => a - b);
  const jsP50 = percentile(samples, 0.5);
  const jsP90 = percentile(samples, 0.9);
  const jsP99 = percentile(samples, 0.99);
  const throughput = await member.request({ op: 'throughput', count: throughputCount, bytes: 64, window: 4096 }, 600000);
  const seconds = throughput['seconds'] as number;
  const acked = throughput['acked'] as number;

  console.log('bench:node: 3 member processes on shm (Node main thread + engine thread each), 64-byte commands');
  console.log(
    `  native mu-bench (same run)   replication p50 ${(nativeP50Ns / 1000).toFixed(2)} us  p99 ${(nativeP99Ns / 1000).toFixed(2)} us`,
  );
  console.log(
    `  JS propose -> resolved       p50 ${jsP50.toFixed(2)} us  p90 ${jsP90.toFixed(2)} us  p99 ${jsP99.toFixed(2)} us  (${samples.length} one at a time)`,
  );
  console.log(`  JS p50 above native p50      ${(jsP50 - nativeP50Ns / 1000).toFixed(2)} us`);
  console.log(
    `  JS throughput                ${Math.round(acked / seconds).toLocaleString('en-US')} commands/s committed (${acked} in ${seconds.toFixed(2)} s, up to 4096 in flight)`,
  );
} finally {
  await cluster.stop();
}
