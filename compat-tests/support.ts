// Shared helpers of the compatibility suite: scripts of commands, a differential runner
// that sends one script to a plain redis-server and to a proxy cluster's leader and compares
// the raw reply bytes, and small RESP readers for the comparisons that cannot be exact.
import { expect } from 'chai';

import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import type { RedisCluster } from '../proxy/testing/redis_cluster.js';

export type Arg = string | Buffer;

// How one reply is compared:
//   exact      byte for byte
//   unordered  a top-level array whose element order is not defined by Redis (hash-encoded
//              sets, hashtable-encoded hashes, KEYS): same elements, byte for byte, any order
//   ttl        an integer that depends on the clock (TTL, PTTL): equal sign and within
//              `tolerance` of each other
// `error` says whether the plain server's reply must be an error (so a script that is wrong
// about Redis fails too, instead of comparing two identical mistakes).
export interface Step {
  argv: Arg[];
  check: 'exact' | 'unordered' | 'ttl';
  error: boolean;
  tolerance: number;
}

export const cmd = (...argv: Arg[]): Step => ({ argv, check: 'exact', error: false, tolerance: 0 });
export const err = (...argv: Arg[]): Step => ({ argv, check: 'exact', error: true, tolerance: 0 });
export const unordered = (...argv: Arg[]): Step => ({ argv, check: 'unordered', error: false, tolerance: 0 });
// TTL in seconds: 2 s of drift allowed; PTTL in milliseconds: 2000 ms.
export const ttl = (...argv: Arg[]): Step => ({ argv, check: 'ttl', error: false, tolerance: 2 });
export const pttl = (...argv: Arg[]): Step => ({ argv, check: 'ttl', error: false, tolerance: 2000 });

export const show = (reply: Buffer | undefined, max = 200): string => {
  if (reply === undefined) return '(no reply)';
  const text = JSON.stringify(reply.subarray(0, max).toString('latin1'));
  return reply.length > max ? `${text}... (${reply.length} bytes)` : text;
};

const showArgv = (argv: Arg[]): string =>
  argv
    .map((arg) => {
      const text = typeof arg === 'string' ? arg : arg.toString('latin1');
      return text.length > 40 ? `${JSON.stringify(text.slice(0, 40))}...(${text.length})` : JSON.stringify(text);
    })
    .join(' ');

// --- RESP2 readers (for replies already framed by the backend connection) ---------------

// The offset just past the reply that starts at `offset`.
export function replyEnd(buf: Buffer, offset: number): number {
  const lineEnd = buf.indexOf('\r\n', offset, 'latin1');
  if (lineEnd < 0) throw new Error(`truncated reply at ${offset}`);
  const type = String.fromCharCode(buf[offset] as number);
  const header = buf.toString('latin1', offset + 1, lineEnd);
  switch (type) {
    case '+':
    case '-':
    case ':':
      return lineEnd + 2;
    case '$': {
      const length = Number(header);
      return length < 0 ? lineEnd + 2 : lineEnd + 2 + length + 2;
    }
    case '*': {
      const count = Number(header);
      let at = lineEnd + 2;
      for (let i = 0; i < count; i++) at = replyEnd(buf, at);
      return at;
    }
    default:
      throw new Error(`unknown reply type ${JSON.stringify(type)} at ${offset}`);
  }
}

// The raw elements of a top-level array reply (undefined when it is not a non-nil array).
export function arrayElements(reply: Buffer): Buffer[] | undefined {
  if (reply[0] !== 0x2a /* * */) return undefined;
  const lineEnd = reply.indexOf('\r\n', 0, 'latin1');
  const count = Number(reply.toString('latin1', 1, lineEnd));
  if (count < 0) return undefined;
  const elements: Buffer[] = [];
  let at = lineEnd + 2;
  for (let i = 0; i < count; i++) {
    const end = replyEnd(reply, at);
    elements.push(reply.subarray(at, end));
    at = end;
  }
  return elements;
}

export function integerReply(reply: Buffer): number | undefined {
  const text = reply.toString('latin1');
  const match = /^:(-?\d+)\r\n$/.exec(text);
  return match === null ? undefined : Number(match[1]);
}

// A bulk string's payload (undefined for anything else, nil included).
export function bulkValue(reply: Buffer): Buffer | undefined {
  if (reply[0] !== 0x24 /* $ */) return undefined;
  const lineEnd = reply.indexOf('\r\n', 0, 'latin1');
  const length = Number(reply.toString('latin1', 1, lineEnd));
  if (length < 0) return undefined;
  return reply.subarray(lineEnd + 2, lineEnd + 2 + length);
}

export const isError = (reply: Buffer | undefined): boolean => reply !== undefined && reply[0] === 0x2d; /* - */

// The proxy's answers for "not applied, the leadership is moving": the runner starts the
// script again at the new leader. Nothing else is retried.
export const LEADERSHIP_REFUSAL = /^-(READONLY|CLUSTERDOWN|TRYAGAIN) mu-proxy/;
const isLeadershipRefusal = (reply: Buffer): boolean => LEADERSHIP_REFUSAL.test(reply.toString('latin1', 0, 40));

// Why two replies to one step differ, or undefined when they agree under the step's check.
export function mismatch(step: Step, plain: Buffer | undefined, proxy: Buffer | undefined): string | undefined {
  if (plain === undefined || proxy === undefined) return `missing reply: plain ${show(plain)}, proxy ${show(proxy)}`;
  if (step.error !== isError(plain)) {
    return `the script expected ${step.error ? 'an error' : 'no error'} from plain redis, which answered ${show(plain)}`;
  }
  switch (step.check) {
    case 'exact':
      return plain.equals(proxy) ? undefined : `plain ${show(plain)} != proxy ${show(proxy)}`;
    case 'unordered': {
      const a = arrayElements(plain);
      const b = arrayElements(proxy);
      if (a === undefined || b === undefined) return `not arrays: plain ${show(plain)}, proxy ${show(proxy)}`;
      const sort = (items: Buffer[]) => items.map((item) => item.toString('latin1')).sort();
      const sa = sort(a);
      const sb = sort(b);
      return sa.length === sb.length && sa.every((item, i) => item === sb[i])
        ? undefined
        : `different elements: plain ${show(plain)} vs proxy ${show(proxy)}`;
    }
    case 'ttl': {
      const a = integerReply(plain);
      const b = integerReply(proxy);
      if (a === undefined || b === undefined) return `not integers: plain ${show(plain)}, proxy ${show(proxy)}`;
      // -1 (no expiry) and -2 (no key) must match exactly; a remaining time within the tolerance.
      if (a < 0 || b < 0) return a === b ? undefined : `plain ${a} != proxy ${b}`;
      return Math.abs(a - b) <= step.tolerance ? undefined : `plain ${a} and proxy ${b} differ by more than ${step.tolerance}`;
    }
  }
}

export interface Outcome {
  plain: Buffer[];
  proxy: Buffer[];
  // How many times the script was started again because the leadership moved.
  restarts: number;
}

const RESET = [encodeCommand(['FLUSHALL']), encodeCommand(['SCRIPT', 'FLUSH']), encodeCommand(['FUNCTION', 'FLUSH'])];
const MAX_ATTEMPTS = 5;

// Runs scripts on both sides, each from an empty keyspace and fresh connections.
export class DifferentialRunner {
  restarts = 0;

  constructor(
    private readonly plainPort: number,
    private readonly cluster: RedisCluster,
  ) {}

  // Sends every step on both sides (one at a time, or all in one write with `pipeline`),
  // then asserts that each pair of replies agrees under its step's check. Returns the
  // replies for further assertions.
  async run(steps: Step[], options: { pipeline?: boolean } = {}): Promise<Outcome> {
    const commands = steps.map((step) => encodeCommand(step.argv));
    const plainConnection = await RedisBackend.connect({ port: this.plainPort });
    let plain: Buffer[];
    try {
      expect((await plainConnection.sendMany(RESET)).map(String)).to.deep.equal(RESET.map(() => '+OK\r\n'));
      plain = await this.send(plainConnection, commands, options.pipeline === true);
    } finally {
      await plainConnection.close();
    }
    let proxy: Buffer[] = [];
    let restarts = 0;
    for (let attempt = 1; ; attempt++) {
      const leader = await this.cluster.leader();
      const connection = await this.cluster.connect(leader);
      let refused: Buffer | undefined;
      try {
        const reset = await connection.sendMany(RESET);
        refused = reset.find(isLeadershipRefusal);
        if (refused === undefined) {
          expect(reset.map(String)).to.deep.equal(RESET.map(() => '+OK\r\n'));
          proxy = await this.send(connection, commands, options.pipeline === true);
          refused = proxy.find(isLeadershipRefusal);
        }
      } finally {
        await connection.close();
      }
      if (refused === undefined) break;
      if (attempt >= MAX_ATTEMPTS) throw new Error(`the leadership kept moving: ${show(refused)}`);
      restarts++;
      this.restarts++;
      console.log(`      (leadership moved, ${show(refused, 80)}: running the script again)`);
    }
    const problems: string[] = [];
    steps.forEach((step, i) => {
      const problem = mismatch(step, plain[i], proxy[i]);
      if (problem !== undefined) problems.push(`#${i} ${showArgv(step.argv)}: ${problem}`);
    });
    expect(problems, `replies that differ:\n${problems.join('\n')}`).to.deep.equal([]);
    return { plain, proxy, restarts };
  }

  private async send(connection: RedisBackend, commands: Buffer[], pipeline: boolean): Promise<Buffer[]> {
    if (pipeline) return connection.sendMany(commands);
    const replies: Buffer[] = [];
    for (const command of commands) replies.push(await connection.send(command));
    return replies;
  }
}

// Every replica's backend holds the same data (DEBUG DIGEST), and it is a real digest.
export async function expectReplicasAgree(cluster: RedisCluster): Promise<string> {
  const digests = await cluster.digests();
  expect(digests).to.have.length(cluster.servers.length);
  expect(digests[0]).to.match(/^\+[0-9a-f]{40}$/);
  expect(new Set(digests).size, `replica digests differ: ${digests.join(' ')}`).to.equal(1);
  return digests[0] as string;
}

// A deterministic pseudo-random sequence (mulberry32), so every run builds the same scripts.
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Empties the cluster's keyspace through the leader, waiting out leadership moves.
export async function flushCluster(cluster: RedisCluster): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const connection = await cluster.connect(await cluster.leader());
    let reply: Buffer;
    try {
      reply = await connection.send(encodeCommand(['FLUSHALL']));
    } finally {
      await connection.close();
    }
    if (reply.toString('latin1') === '+OK\r\n') return;
    if (!isLeadershipRefusal(reply) || attempt >= MAX_ATTEMPTS) throw new Error(`FLUSHALL through the proxy: ${show(reply)}`);
  }
}

const LEADERSHIP_TEXT = /(READONLY|CLUSTERDOWN|TRYAGAIN) mu-proxy/;

// Runs a client test against the current leader's proxy port from an empty keyspace; when it
// fails because the leadership moved (a READONLY, CLUSTERDOWN or TRYAGAIN answer from the
// proxy, in the error or in the value an assertion saw), it runs again at the new leader.
// Any other failure is the test's.
export async function atLeader(cluster: RedisCluster, body: (port: number) => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await flushCluster(cluster);
    const port = cluster.proxyPorts[await cluster.leader()] as number;
    try {
      await body(port);
      return;
    } catch (error) {
      const seen = `${String((error as Error)?.message)} ${String((error as { actual?: unknown })?.actual)}`;
      if (attempt >= MAX_ATTEMPTS || !LEADERSHIP_TEXT.test(seen)) throw error;
      console.log(`      (leadership moved: ${seen.slice(0, 100)}; running the test again)`);
    }
  }
}
