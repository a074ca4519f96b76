// npm run bench:backend-socket: what a Unix socket saves over loopback TCP on the hop from
// a Node process (the proxy) to its local redis-server. One redis-server listens on both;
// a closed loop of SETs from Node times each round trip, TCP and Unix socket in
// alternating rounds (this machine is shared and noisy: compare only figures of one run).
//
//   node --import tsx proxy/testing/bench_backend_socket.ts [--requests 20000] [--rounds 3]
//
// On a 2-vCPU VM whose idle vCPUs wake slowly, run it on one core (`taskset -c 1 npm run
// bench:backend-socket`): a wake-up across cores then costs more than either transport.
import net from 'node:net';

import type { Endpoint } from '../../adapters/endpoint.js';
import { connectOptionsOf, describeEndpoint } from '../../adapters/endpoint.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';

function positiveInt(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} takes a positive integer`);
  return value;
}

const requests = positiveInt('--requests', 20_000);
const rounds = positiveInt('--rounds', 3);
const SET = Buffer.from('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$16\r\nvvvvvvvvvvvvvvvv\r\n');
const OK = '+OK\r\n';

// Round trips in microseconds, sorted; one SET in flight at a time.
async function closedLoop(endpoint: Endpoint, count: number): Promise<number[]> {
  const socket = net.connect(connectOptionsOf(endpoint));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const samples: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let sentAt = process.hrtime.bigint();
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        // One reply per request; +OK is five bytes and arrives whole on loopback.
        if (chunk.toString('latin1') !== OK) return reject(new Error(`SET answered ${JSON.stringify(chunk.toString('latin1'))}`));
        samples.push(Number(process.hrtime.bigint() - sentAt) / 1000);
        if (samples.length === count) return resolve();
        sentAt = process.hrtime.bigint();
        socket.write(SET);
      });
      socket.write(SET);
    });
  } finally {
    socket.destroy();
  }
  return samples.sort((a, b) => a - b);
}

const at = (sorted: number[], quantile: number): number => sorted[Math.min(sorted.length - 1, Math.floor(quantile * sorted.length))] ?? NaN;

const server = await RedisServerProcess.start({ unixSocket: true });
try {
  const tcp: Endpoint = { host: '127.0.0.1', port: server.port };
  const unix = server.endpoint;
  console.log(`redis-server ${describeEndpoint(tcp)} and ${describeEndpoint(unix)}; ${rounds} rounds of ${requests} SETs each way, one in flight`);
  console.log(`${'round'.padEnd(6)} ${'transport'.padEnd(12)} ${'p50'.padStart(8)} ${'p90'.padStart(8)} ${'p99'.padStart(8)} us`);
  const medians: Record<'tcp' | 'unix', number[]> = { tcp: [], unix: [] };
  await closedLoop(tcp, 1000); // warm-up
  await closedLoop(unix, 1000);
  for (let round = 1; round <= rounds; round++) {
    for (const [name, endpoint] of [['tcp', tcp], ['unix', unix]] as const) {
      const sorted = await closedLoop(endpoint, requests);
      medians[name].push(at(sorted, 0.5));
      console.log(`${String(round).padEnd(6)} ${name.padEnd(12)} ${at(sorted, 0.5).toFixed(1).padStart(8)} ${at(sorted, 0.9).toFixed(1).padStart(8)} ${at(sorted, 0.99).toFixed(1).padStart(8)}`);
    }
  }
  const best = (values: number[]): number => Math.min(...values);
  console.log(`best p50: tcp ${best(medians.tcp).toFixed(1)} us, unix ${best(medians.unix).toFixed(1)} us; unix / tcp ${(best(medians.unix) / best(medians.tcp)).toFixed(3)}`);
} finally {
  await server.stop();
}
