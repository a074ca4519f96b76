// Faults through the proxy, with real processes: several clients write while the leader's
// proxy process is stopped or killed, or a follower's redis-server crashes. Every write a
// client saw acknowledged must be on every surviving replica's redis-server afterwards,
// and their digests must agree. A second workload mixes SET, GET and INCR on a few shared
// keys and records every operation's interval: that history must be linearizable.
import { expect } from 'chai';
import { Redis as IORedis } from 'ioredis';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { checkLinearizable, type HistoryEntry } from '../testing/linearizability.js';
import { ProxyProcesses } from '../testing/proxy_processes.js';

// The loops of every workload still running: afterEach halts them when a test failed
// before stopping its own, or they would keep the process alive, retrying a cluster that
// is gone.
const halts = new Set<() => void>();
// How long a client looks for a settled leader before it tries its old target again (and
// checks whether it was halted).
const LEADER_SEARCH_TIMEOUT_MS = 10000;

interface Workload {
  acknowledged: Map<string, string>; // key -> value a client saw +OK for
  errors: Map<string, number>; // first word of each error reply, counted
  stop: () => Promise<void>;
}

// `clients` loops, each writing its own keys one at a time to whichever replica leads;
// on an error or a dropped connection it asks the others who leads and carries on.
function runWorkload(cluster: ProxyProcesses, clients: number): Workload {
  const acknowledged = new Map<string, string>();
  const errors = new Map<string, number>();
  let running = true;
  const halt = (): void => {
    running = false;
  };
  halts.add(halt);
  const loops = Array.from({ length: clients }, async (_, clientId) => {
    let target = await cluster.leader();
    let connection: RedisBackend | undefined;
    for (let n = 0; running; n++) {
      const key = `client:${clientId}:${n}`;
      try {
        connection ??= await RedisBackend.connect({ port: cluster.proxyPorts[target] as number, connectTimeoutMs: 500 });
        // A stopped process never answers: like any real client, give up after a while.
        const answer = (
          await Promise.race([
            connection.send(encodeCommand(['SET', key, String(n)])),
            new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 500)),
          ])
        ).toString();
        if (answer === '+OK\r\n') {
          acknowledged.set(key, String(n));
          continue;
        }
        const word = answer.slice(1).split(' ')[0] ?? '?';
        errors.set(word, (errors.get(word) ?? 0) + 1);
      } catch {
        errors.set('connection or timeout', (errors.get('connection or timeout') ?? 0) + 1);
      }
      // Refused or cut off: find the leader among the replicas that answer.
      await connection?.close().catch(() => {});
      connection = undefined;
      const answering = [];
      for (let id = 0; id < cluster.proxyPorts.length; id++) if ((await cluster.status(id)) !== undefined) answering.push(id);
      target = await cluster.leader(answering, LEADER_SEARCH_TIMEOUT_MS).catch(() => target);
    }
    await connection?.close();
  });
  return {
    acknowledged,
    errors,
    stop: async () => {
      halt();
      halts.delete(halt);
      await Promise.all(loops);
    },
  };
}

async function expectAllAcknowledgedOn(cluster: ProxyProcesses, ids: number[], acknowledged: Map<string, string>): Promise<void> {
  for (const id of ids) {
    const backend = await RedisBackend.connect({ port: cluster.servers[id]?.port as number });
    const keys = [...acknowledged.keys()];
    const values = await backend.sendMany(keys.map((key) => encodeCommand(['GET', key])));
    await backend.close();
    const missing = keys.filter((key, i) => values[i]?.toString() !== `$${acknowledged.get(key)?.length}\r\n${acknowledged.get(key)}\r\n`);
    expect(missing.slice(0, 5), `replica ${id}: ${missing.length} acknowledged writes missing`).to.deep.equal([]);
  }
}

async function acknowledgedAtLeast(workload: Workload, count: number, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (workload.acknowledged.size < count) {
    if (Date.now() > deadline) throw new Error(`only ${workload.acknowledged.size} writes acknowledged`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// --- a mixed workload, checked for linearizability ------------------------------------

const REGISTER_KEYS = ['register:0', 'register:1', 'register:2', 'register:3'];
const COUNTER_KEYS = ['counter:0', 'counter:1'];
const ALL_KEYS = [...REGISTER_KEYS, ...COUNTER_KEYS];
// A stopped process never answers: like any real client, give up after a while.
const REPLY_TIMEOUT_MS = 500;
// Error replies a replica gives before it proposes anything (front_end.ts writeRefusal,
// readRefusal, and proposals that never reached a log): the command never ran anywhere,
// so it leaves the history. Every other error, a timeout or a dropped connection leaves
// the outcome unknown.
const REFUSED_BEFORE_PROPOSING = new Set(['READONLY', 'CLUSTERDOWN', 'NOAUTH', 'MASTERDOWN']);

interface Recorded {
  entry: HistoryEntry;
  // With an unknown outcome caused by an error reply: the error's first word.
  errorWord: string | undefined;
}

interface MixedWorkload {
  history: Recorded[];
  completed: () => number; // operations that got a definite reply
  errors: Map<string, number>; // first word of each error reply (or 'connection or timeout'), counted
  unexpected: string[]; // replies of a shape the command cannot have
  stop: () => Promise<void>;
}

type Reply = { kind: 'status' | 'error'; text: string } | { kind: 'bulk'; value: string | null } | { kind: 'integer'; value: number };

function parseReply(raw: Buffer): Reply | undefined {
  const text = raw.toString();
  const headerEnd = text.indexOf('\r\n');
  const header = text.slice(1, headerEnd);
  switch (text[0]) {
    case '+':
      return { kind: 'status', text: header };
    case '-':
      return { kind: 'error', text: header };
    case ':':
      return { kind: 'integer', value: Number(header) };
    case '$': {
      const length = Number(header);
      return { kind: 'bulk', value: length < 0 ? null : raw.subarray(headerEnd + 2, headerEnd + 2 + length).toString() };
    }
    default:
      return undefined;
  }
}

// `clients` loops, each running one operation at a time on a few shared keys: SET of a
// value unique to the operation on a register key, GET of any key, INCR of a counter key,
// each recorded with its invocation and completion instants (performance.now()). On an
// error or a dropped connection a client asks the others who leads and carries on there.
function runMixedWorkload(cluster: ProxyProcesses, clients: number): MixedWorkload {
  const history: Recorded[] = [];
  const errors = new Map<string, number>();
  const unexpected: string[] = [];
  let completed = 0;
  let running = true;
  const halt = (): void => {
    running = false;
  };
  halts.add(halt);
  const countError = (word: string): void => void errors.set(word, (errors.get(word) ?? 0) + 1);
  const pick = (keys: string[]): string => keys[Math.floor(Math.random() * keys.length)] as string;
  const loops = Array.from({ length: clients }, async (_, client) => {
    let target = await cluster.leader();
    let connection: RedisBackend | undefined;
    for (let n = 0; running; n++) {
      const roll = Math.random();
      const kind = roll < 0.4 ? 'set' : roll < 0.7 ? 'get' : 'incr';
      const key = pick(kind === 'set' ? REGISTER_KEYS : kind === 'incr' ? COUNTER_KEYS : ALL_KEYS);
      const value = `${client}:${n}`;
      const argv = kind === 'set' ? ['SET', key, value] : [kind.toUpperCase(), key];
      let failed = true;
      try {
        connection ??= await RedisBackend.connect({ port: cluster.proxyPorts[target] as number, connectTimeoutMs: REPLY_TIMEOUT_MS });
        // Invoked from here on: the command may take effect at any instant after this.
        const invokeMs = performance.now();
        let timer: NodeJS.Timeout | undefined;
        let raw: Buffer;
        try {
          raw = await Promise.race([
            connection.send(encodeCommand(argv)),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error('timed out')), REPLY_TIMEOUT_MS);
            }),
          ]);
        } catch (error) {
          history.push({ entry: unknownOutcome(kind, client, key, value, invokeMs), errorWord: undefined });
          throw error;
        } finally {
          clearTimeout(timer);
        }
        const completeMs = performance.now();
        const reply = parseReply(raw);
        if (reply?.kind === 'error') {
          const word = reply.text.split(' ')[0] ?? '?';
          countError(word);
          if (!REFUSED_BEFORE_PROPOSING.has(word)) history.push({ entry: unknownOutcome(kind, client, key, value, invokeMs), errorWord: word });
        } else if (kind === 'set' && reply?.kind === 'status' && reply.text === 'OK') {
          history.push({ entry: { client, key, kind, input: value, invokeMs, completeMs }, errorWord: undefined });
          failed = false;
        } else if (kind === 'get' && reply?.kind === 'bulk') {
          history.push({ entry: { client, key, kind, output: reply.value, invokeMs, completeMs }, errorWord: undefined });
          failed = false;
        } else if (kind === 'incr' && reply?.kind === 'integer') {
          history.push({ entry: { client, key, kind, output: reply.value, invokeMs, completeMs }, errorWord: undefined });
          failed = false;
        } else {
          unexpected.push(`${argv.join(' ')} -> ${JSON.stringify(raw.toString())}`);
          history.push({ entry: unknownOutcome(kind, client, key, value, invokeMs), errorWord: undefined });
        }
      } catch {
        countError('connection or timeout');
      }
      if (!failed) {
        completed++;
        continue;
      }
      // Refused or cut off: a late reply must not be taken for the next command's, so the
      // connection goes; then find the leader among the replicas that answer.
      await connection?.close().catch(() => {});
      connection = undefined;
      const answering = [];
      for (let id = 0; id < cluster.proxyPorts.length; id++) if ((await cluster.status(id)) !== undefined) answering.push(id);
      target = await cluster.leader(answering, LEADER_SEARCH_TIMEOUT_MS).catch(() => target);
    }
    await connection?.close();
  });
  return {
    history,
    completed: () => completed,
    errors,
    unexpected,
    stop: async () => {
      halt();
      halts.delete(halt);
      await Promise.all(loops);
    },
  };
}

function unknownOutcome(kind: 'set' | 'get' | 'incr', client: number, key: string, value: string, invokeMs: number): HistoryEntry {
  if (kind === 'set') return { client, key, kind, input: value, invokeMs, completeMs: undefined };
  return { client, key, kind, output: undefined, invokeMs, completeMs: undefined };
}

// Operations completed before a fault, and again after it (and after a resumption).
const MIXED_OPERATIONS_PER_PHASE = 1000;

// MU STATUS of replica `id` once `accept` takes it (within `timeoutMs`).
async function statusWhen(cluster: ProxyProcesses, id: number, accept: (report: Record<string, unknown>) => boolean, timeoutMs = 10000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await cluster.status(id);
    if (report !== undefined && accept(report)) return report;
    if (Date.now() > deadline) throw new Error(`replica ${id}'s MU STATUS did not get there: ${JSON.stringify(report)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function completedAtLeast(workload: MixedWorkload, count: number, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (workload.completed() < count) {
    if (Date.now() > deadline) throw new Error(`only ${workload.completed()} operations completed (errors: ${JSON.stringify([...workload.errors])})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// After the workload: every key as each of `ids`' redis-servers holds it, appended to the
// history as reads that began after every operation (so a write acknowledged and then lost
// shows as a violation), then the history checked. TRYAGAIN says "it was not applied":
// the history is checked once with those operations as unknown (what a client must
// assume) and once without them (what the proxy promises).
async function expectLinearizable(cluster: ProxyProcesses, ids: number[], workload: MixedWorkload): Promise<void> {
  expect(workload.unexpected.slice(0, 5), 'replies of an unexpected shape').to.deep.equal([]);
  const finalReads: Recorded[] = [];
  for (const id of ids) {
    const backend = await RedisBackend.connect({ port: cluster.servers[id]?.port as number });
    const invokeMs = performance.now();
    const values = await backend.sendMany(ALL_KEYS.map((key) => encodeCommand(['GET', key])));
    const completeMs = performance.now();
    await backend.close();
    const held = new Map<string, string | null>();
    ALL_KEYS.forEach((key, i) => {
      const reply = parseReply(values[i] as Buffer);
      if (reply?.kind !== 'bulk') throw new Error(`replica ${id}'s redis-server answered GET ${key} with ${String(values[i])}`);
      held.set(key, reply.value);
      finalReads.push({ entry: { client: 1000 + id, key, kind: 'get', output: reply.value, invokeMs, completeMs }, errorWord: undefined });
    });
    // Counters, said plainly: at least every acknowledged INCR, at most those plus the unknown ones.
    for (const key of COUNTER_KEYS) {
      const incrs = workload.history.filter(({ entry }) => entry.kind === 'incr' && entry.key === key);
      const acknowledged = incrs.filter(({ entry }) => entry.completeMs !== undefined).length;
      const final = Number(held.get(key) ?? 0);
      expect(final, `replica ${id}: ${key} after ${acknowledged} acknowledged and ${incrs.length - acknowledged} unknown INCRs`).to.be.within(acknowledged, incrs.length);
    }
  }
  const entries = [...workload.history, ...finalReads];
  const asClientSeesIt = checkLinearizable(entries.map(({ entry }) => entry));
  expect(asClientSeesIt.ok, asClientSeesIt.explanation).to.equal(true);
  expect(asClientSeesIt.keysChecked).to.equal(ALL_KEYS.length);
  const asPromised = checkLinearizable(entries.filter(({ errorWord }) => errorWord !== 'TRYAGAIN').map(({ entry }) => entry));
  expect(asPromised.ok, `with TRYAGAIN taken as "not applied": ${asPromised.explanation}`).to.equal(true);
}

describe('faults through the Redis proxy (processes, shm, real redis-servers)', function () {
  this.timeout(180000);
  let cluster: ProxyProcesses | undefined;

  afterEach(async () => {
    for (const halt of halts) halt();
    halts.clear();
    await cluster?.stop();
    cluster = undefined;
  });

  it('SIGKILL of the leader proxy under 6 writing clients: every acknowledged write survives', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runWorkload(cluster, 6);
    await acknowledgedAtLeast(workload, 300);
    cluster.proxies[leader]?.kill('SIGKILL');
    const before = workload.acknowledged.size;
    await acknowledgedAtLeast(workload, before + 300);
    await workload.stop();
    const survivors = [0, 1, 2].filter((id) => id !== leader);
    const digests = await cluster.converged(survivors);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectAllAcknowledgedOn(cluster, survivors, workload.acknowledged);
    cluster.proxies[leader] = undefined;
  });

  it('SIGSTOP of the leader proxy, then SIGCONT: writes continue, and all three backends converge', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runWorkload(cluster, 6);
    await acknowledgedAtLeast(workload, 300);
    cluster.proxies[leader]?.kill('SIGSTOP');
    const before = workload.acknowledged.size;
    await acknowledgedAtLeast(workload, before + 300);
    cluster.proxies[leader]?.kill('SIGCONT');
    await acknowledgedAtLeast(workload, before + 600);
    await workload.stop();
    const digests = await cluster.converged([0, 1, 2]);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectAllAcknowledgedOn(cluster, [0, 1, 2], workload.acknowledged);
  });

  it('SIGKILL of the leader proxy under 6 clients mixing SET, GET and INCR on 6 shared keys: the history is linearizable', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runMixedWorkload(cluster, 6);
    await completedAtLeast(workload, MIXED_OPERATIONS_PER_PHASE);
    cluster.proxies[leader]?.kill('SIGKILL');
    // Completed after the kill: so served by a new leader.
    await completedAtLeast(workload, workload.completed() + MIXED_OPERATIONS_PER_PHASE);
    await workload.stop();
    const survivors = [0, 1, 2].filter((id) => id !== leader);
    const digests = await cluster.converged(survivors);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectLinearizable(cluster, survivors, workload);
    cluster.proxies[leader] = undefined;
  });

  it('SIGSTOP of the leader proxy, then SIGCONT, under 6 clients mixing SET, GET and INCR: the history is linearizable', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runMixedWorkload(cluster, 6);
    await completedAtLeast(workload, MIXED_OPERATIONS_PER_PHASE);
    cluster.proxies[leader]?.kill('SIGSTOP');
    await completedAtLeast(workload, workload.completed() + MIXED_OPERATIONS_PER_PHASE);
    // The old leader comes back while clients keep going: whatever it still believed
    // must not show in what they read.
    cluster.proxies[leader]?.kill('SIGCONT');
    await completedAtLeast(workload, workload.completed() + MIXED_OPERATIONS_PER_PHASE);
    await workload.stop();
    const digests = await cluster.converged([0, 1, 2]);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectLinearizable(cluster, [0, 1, 2], workload);
  });

  it("restart of a follower's redis-server under 6 writing clients: the others keep committing, and that replica gets back in step from a snapshot", async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const failed = (leader + 1) % 3;
    const workload = runWorkload(cluster, 6);
    await acknowledgedAtLeast(workload, 300);
    const port = cluster.servers[failed]?.port;
    // Crashed and replaced by an empty server on the same address while clients write.
    const fresh = await cluster.restartServer(failed);
    expect(fresh.port).to.equal(port);
    const before = workload.acknowledged.size;
    await acknowledgedAtLeast(workload, before + 300);
    // It copied a healthy replica's snapshot and follows the log again.
    const status = await statusWhen(cluster, failed, (report) => report['backendFailed'] === null && (report['resync'] as { completed: number }).completed >= 1, 30000);
    // (A leader change meanwhile is allowed: a loaded machine can delay heartbeats past
    // the 20 ms window; what must hold is below.)
    expect(status['resync'], JSON.stringify(status)).to.include({ state: 'in step' });
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    await workload.stop();
    const digests = await cluster.converged([0, 1, 2]);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectAllAcknowledgedOn(cluster, [0, 1, 2], workload.acknowledged);
  });

  it("restart of the leader's redis-server under 6 writing clients: it steps down, another leads, and it gets back in step", async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runWorkload(cluster, 6);
    await acknowledgedAtLeast(workload, 300);
    await cluster.restartServer(leader);
    const before = workload.acknowledged.size;
    await acknowledgedAtLeast(workload, before + 300);
    const status = await statusWhen(cluster, leader, (report) => report['backendFailed'] === null && (report['resync'] as { completed: number }).completed >= 1, 30000);
    expect(status['role'], JSON.stringify(status)).to.not.equal('leader');
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    await workload.stop();
    const digests = await cluster.converged([0, 1, 2]);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    await expectAllAcknowledgedOn(cluster, [0, 1, 2], workload.acknowledged);
  });

  it('mu-proxy check compares every backend at one log index, and finds a backend changed behind the proxy', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const workload = runWorkload(cluster, 4);
    await acknowledgedAtLeast(workload, 200);
    // Clients keep writing while it runs: the digests are taken at the same entry anyway.
    const agreeing = await cluster.runCli(['check']);
    await workload.stop();
    expect(agreeing.stdout).to.match(/digest entry at log index \d+, proposed by replica \d/);
    expect(agreeing.stdout, agreeing.stdout).to.include('all 3 replicas agree');
    expect(agreeing.code).to.equal(0);
    const follower = (leader + 1) % 3;
    const direct = await RedisBackend.connect({ port: cluster.servers[follower]?.port as number });
    await direct.send(encodeCommand(['SET', 'written-behind-the-proxy', 'x']));
    await direct.close();
    const differing = await cluster.runCli(['check']);
    expect(differing.stdout).to.match(/DIFFERENT: 2 distinct digests/);
    expect(differing.code).to.equal(1);
  });

  it('ioredis connected to a follower rides through a SIGKILL of the leader: it reconnects, and no acknowledged INCR is lost', async () => {
    cluster = await ProxyProcesses.start();
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    // A client as an application would configure it: reconnect quickly, retry a command
    // across reconnections.
    const redis = new IORedis({ host: '127.0.0.1', port: cluster.proxyPorts[follower] as number, maxRetriesPerRequest: 100, retryStrategy: () => 20 });
    redis.on('error', () => {});
    const replies: number[] = [];
    const errors: string[] = [];
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          replies.push(await redis.incr('failover:counter'));
        } catch (error) {
          errors.push((error as Error).message.split(' ')[0] ?? '?');
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    })();
    const until = async (count: number) => {
      const deadline = Date.now() + 30000;
      while (replies.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${replies.length} INCRs acknowledged (errors: ${errors.join(' ')})`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    try {
      await until(200);
      cluster.proxies[leader]?.kill('SIGKILL');
      cluster.proxies[leader] = undefined;
      await until(replies.length + 200);
    } finally {
      running = false;
      await loop;
    }
    // Each acknowledged INCR answered a value no other did (a command resent after a
    // reconnection may have run twice: then the lost answer is simply never seen).
    expect(new Set(replies).size).to.equal(replies.length);
    const final = Number(await redis.get('failover:counter'));
    redis.disconnect();
    expect(final).to.be.at.least(Math.max(...replies));
    const survivors = [0, 1, 2].filter((id) => id !== leader);
    const digests = await cluster.converged(survivors);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
  });
});
