// Faults through the memcached proxy, with real processes: clients write while the
// leader's proxy process is killed or stopped. Every set a client saw STORED must be on
// every surviving replica's memcached afterwards, and their items must agree.
import { expect } from 'chai';

import { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { MemcachedServerProcess } from '../../adapters/memcached/memcached_server_process.js';
import { MemcachedProcesses } from '../testing/memcached_processes.js';

interface Workload {
  acknowledged: Map<string, string>;
  stop: () => Promise<void>;
}

// `clients` loops, each setting its own keys one at a time at whichever replica leads; on
// an error, a timeout or a dropped connection it asks which replica leads and carries on.
function runWorkload(cluster: MemcachedProcesses, clients: number): Workload {
  const acknowledged = new Map<string, string>();
  let running = true;
  const loops = Array.from({ length: clients }, async (_, client) => {
    let target = await cluster.leader();
    let connection: MemcachedBackend | undefined;
    for (let n = 0; running; n++) {
      const key = `client:${client}:${n}`;
      const value = String(n);
      try {
        connection ??= await MemcachedBackend.connect({ port: cluster.proxyPorts[target] as number, connectTimeoutMs: 500 });
        const answer = await Promise.race([
          connection.send(Buffer.from(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`), 'line'),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 500)),
        ]);
        if (answer.toString() === 'STORED\r\n') {
          acknowledged.set(key, value);
          continue;
        }
      } catch {
        // refused or cut off: find the leader below
      }
      await connection?.close().catch(() => {});
      connection = undefined;
      const answering = [];
      for (let id = 0; id < cluster.proxyPorts.length; id++) if ((await cluster.role(id)) !== undefined) answering.push(id);
      target = await cluster.leader(answering, 10000).catch(() => target);
    }
    await connection?.close();
  });
  return {
    acknowledged,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function acknowledgedAtLeast(workload: Workload, count: number, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (workload.acknowledged.size < count) {
    if (Date.now() > deadline) throw new Error(`only ${workload.acknowledged.size} sets acknowledged`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function expectAllAcknowledgedOn(cluster: MemcachedProcesses, ids: number[], acknowledged: Map<string, string>): Promise<void> {
  for (const id of ids) {
    const backend = await MemcachedBackend.connect((cluster.servers[id] as MemcachedServerProcess).endpoint);
    const keys = [...acknowledged.keys()];
    const replies = await backend.sendMany(keys.map((key) => ({ request: Buffer.from(`get ${key}\r\n`), shape: 'values' as const })));
    await backend.close();
    const missing = keys.filter((key, i) => !(replies[i] as Buffer).toString().includes(`\r\n${acknowledged.get(key)}\r\nEND`));
    expect(missing.slice(0, 5), `replica ${id}: ${missing.length} acknowledged sets missing`).to.deep.equal([]);
  }
}

describe('faults through the memcached proxy (processes, shm, real memcached servers)', function () {
  this.timeout(180000);
  let cluster: MemcachedProcesses | undefined;
  let workload: Workload | undefined;

  afterEach(async () => {
    await workload?.stop();
    workload = undefined;
    await cluster?.stop();
    cluster = undefined;
  });

  // SIGKILL of the leader's or a follower's proxy while 4 clients set keys: sets go on, and
  // every acknowledged one is on both survivors, which agree.
  async function killUnderLoad(victim: 'leader' | 'follower'): Promise<void> {
    cluster = await MemcachedProcesses.start();
    const leader = await cluster.leader();
    const killed = victim === 'leader' ? leader : (leader + 1) % 3;
    workload = runWorkload(cluster, 4);
    await acknowledgedAtLeast(workload, 300);
    cluster.proxies[killed]?.kill('SIGKILL');
    cluster.proxies[killed] = undefined;
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    await workload.stop();
    if (victim === 'follower') expect(await cluster.leader(), 'the leader keeps leading with one follower').to.equal(leader);
    const survivors = [0, 1, 2].filter((id) => id !== killed);
    const contents = await cluster.converged(survivors);
    expect(new Set(contents).size, 'the survivors hold the same items').to.equal(1);
    await expectAllAcknowledgedOn(cluster, survivors, workload.acknowledged);
  }

  it('SIGKILL of the leader proxy under 4 writing clients: every acknowledged set survives', () => killUnderLoad('leader'));

  it('SIGSTOP of the leader proxy, then SIGCONT: sets continue, and all three memcached servers converge', async () => {
    cluster = await MemcachedProcesses.start();
    const leader = await cluster.leader();
    workload = runWorkload(cluster, 4);
    await acknowledgedAtLeast(workload, 300);
    cluster.proxies[leader]?.kill('SIGSTOP');
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    cluster.proxies[leader]?.kill('SIGCONT');
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    await workload.stop();
    const contents = await cluster.converged([0, 1, 2]);
    expect(new Set(contents).size, 'all three hold the same items').to.equal(1);
    await expectAllAcknowledgedOn(cluster, [0, 1, 2], workload.acknowledged);
  });

  it('SIGKILL of a follower proxy under 4 writing clients: sets go on, every acknowledged one is on the two survivors', () => killUnderLoad('follower'));

  it('SIGSTOP of a follower proxy, then SIGCONT: it catches up, and mu-proxy check finds all three equal (and a change behind the proxy)', async () => {
    cluster = await MemcachedProcesses.start();
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    // mu-proxy status speaks memcached to a cluster that fronts memcached only.
    const status = await cluster.runCli(['status']);
    expect(status.stdout).to.match(new RegExp(`^replica ${leader} \\(127\\.0\\.0\\.1:\\d+\\): node_id=${leader} role=leader leader=${leader} `, 'm'));
    expect(status.stdout).to.match(new RegExp(`^replica ${follower} \\(127\\.0\\.0\\.1:\\d+\\): node_id=${follower} role=follower leader=${leader} `, 'm'));
    workload = runWorkload(cluster, 4);
    await acknowledgedAtLeast(workload, 300);
    cluster.proxies[follower]?.kill('SIGSTOP');
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    cluster.proxies[follower]?.kill('SIGCONT');
    await acknowledgedAtLeast(workload, workload.acknowledged.size + 300);
    // Clients keep writing while the check runs: the digests are taken at one entry anyway.
    const agreeing = await cluster.runCli(['check']);
    await workload.stop();
    expect(agreeing.stdout, agreeing.stdout).to.match(/digest entry at log index \d+, proposed by replica \d/);
    expect(agreeing.stdout, agreeing.stdout).to.include('all 3 replicas agree');
    expect(agreeing.code).to.equal(0);
    const contents = await cluster.converged([0, 1, 2]);
    expect(new Set(contents).size, 'all three hold the same items').to.equal(1);
    await expectAllAcknowledgedOn(cluster, [0, 1, 2], workload.acknowledged);
    const direct = await MemcachedBackend.connect((cluster.servers[follower] as MemcachedServerProcess).endpoint);
    await direct.send(Buffer.from('set written-behind-the-proxy 0 0 1\r\nx\r\n'), 'line');
    await direct.close();
    const differing = await cluster.runCli(['check']);
    expect(differing.stdout, differing.stdout).to.match(/DIFFERENT: 2 distinct digests/);
    expect(differing.code).to.equal(1);
  });
});
