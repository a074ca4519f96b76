// Faults through the proxy, with real processes: several clients write while the leader's
// proxy process is stopped or killed. Every write a client saw acknowledged must be on
// every surviving replica's redis-server afterwards, and their digests must agree.
import { expect } from 'chai';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { ProxyProcesses } from '../testing/proxy_processes.js';

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
      target = await cluster.leader(answering).catch(() => target);
    }
    await connection?.close();
  });
  return {
    acknowledged,
    errors,
    stop: async () => {
      running = false;
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

describe('faults through the Redis proxy (processes, shm, real redis-servers)', function () {
  this.timeout(180000);
  let cluster: ProxyProcesses | undefined;

  afterEach(async () => {
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
});
