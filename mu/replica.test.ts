// The Replica API in one Node process: three replicas over shm, each with its own engine
// thread, wired by exchanging cards directly (the control plane does this across
// processes; see mu/cluster_process.test.ts).
import { expect } from 'chai';

import { ProposalError, Replica, type AppliedEntry } from './replica.js';

let clusterCounter = 0;

export const sharedCoreDetector = {
  readIntervalUs: 2000,
  heartbeatIntervalUs: 500,
  maxScore: 12,
  failureThreshold: 2,
  recoveryThreshold: 9,
} as const;

function startCluster(count = 3): Replica[] {
  const clusterName = `replica-test-${process.pid}-${clusterCounter++}`;
  const replicas: Replica[] = [];
  for (let id = 0; id < count; id++) {
    replicas.push(
      new Replica({
        nodeId: id,
        replicaCount: count,
        fabric: 'shm',
        clusterName,
        logBytes: 1 << 20,
        maxEntryBytes: 4096,
        // Three engines, mocha and the Node thread share two cores here: a 20 ms detection
        // window, as the demo uses, keeps scheduling gaps from passing for failures.
        ...sharedCoreDetector,
      }),
    );
  }
  const cards = replicas.map((replica) => replica.card());
  for (const replica of replicas) replica.connect(cards);
  for (const replica of replicas) replica.start();
  return replicas;
}

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 10000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('Replica (three engines in one process, shm)', () => {
  let replicas: Replica[] = [];
  afterEach(() => {
    for (const replica of replicas) replica.stop();
    replicas = [];
  });

  it('resolves proposals with their log index once applied, and every replica applies the same entries', async () => {
    replicas = startCluster();
    const leader = await waitFor(() => replicas.find((replica) => replica.isLeader), 'a leader');
    const applied: AppliedEntry[][] = replicas.map(() => []);
    replicas.forEach((replica, id) => replica.on('applied', (entry) => applied[id]?.push(entry)));

    const commands = Array.from({ length: 500 }, (_, i) => Buffer.from(`set key${i} ${i}`));
    const indices = await leader.propose(commands);
    expect(indices).to.have.length(500);
    for (let i = 1; i < indices.length; i++) expect(indices[i]).to.be.at.least(indices[i - 1] ?? 0);
    // One event-loop turn's proposals share entries.
    expect(new Set(indices).size).to.be.lessThan(100);

    const flatten = (entries: AppliedEntry[]) =>
      entries.flatMap((entry) => entry.commands.map((command) => `${entry.index}:${command.data.toString()}`));
    await waitFor(() => (replicas.every((_, id) => flatten(applied[id] ?? []).length === 500) ? true : undefined), 'all applied');
    const reference = flatten(applied[leader.nodeId] ?? []);
    for (let id = 0; id < replicas.length; id++) expect(flatten(applied[id] ?? [])).to.deep.equal(reference);
    expect(reference[0]).to.equal(`${indices[0]}:set key0 0`);

    const status = leader.status();
    expect(status.role).to.equal('leader');
    expect(status.proposeToCommit.samples).to.equal(500);
    expect(status.outstandingProposals).to.equal(0);
  });

  it('rejects a proposal at a follower with NOT_LEADER, and nothing is applied', async () => {
    replicas = startCluster();
    const leader = await waitFor(() => replicas.find((replica) => replica.isLeader), 'a leader');
    const follower = replicas.find((replica) => replica !== leader) as Replica;
    const seen: string[][] = replicas.map(() => []);
    replicas.forEach((replica, id) =>
      replica.on('applied', (entry) => seen[id]?.push(...entry.commands.map((command) => command.data.toString()))),
    );
    const error = await follower.propose(Buffer.from('set misdirected 1')).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).to.be.instanceOf(ProposalError);
    expect((error as ProposalError).code).to.equal('NOT_LEADER');
    await leader.propose(Buffer.from('set after 1'));
    await waitFor(() => (seen.every((commands) => commands.includes('set after 1')) ? true : undefined), 'all applied');
    for (const commands of seen) expect(commands).to.deep.equal(['set after 1']);
  });

  it('refuses an oversize command and a stopped replica with clear codes', async () => {
    replicas = startCluster();
    const tooLarge = await replicas[0]!.propose(Buffer.alloc(5000)).catch((reason: unknown) => reason);
    expect((tooLarge as ProposalError).code).to.equal('TOO_LARGE');
    replicas[0]!.stop();
    const stopped = await replicas[0]!.propose(Buffer.from('x')).catch((reason: unknown) => reason);
    expect((stopped as ProposalError).code).to.equal('STOPPED');
  });

  it('a replica that loses its state steps down, takes no part, and resumes from a snapshot cursor of another replica', async () => {
    replicas = startCluster();
    const leader = await waitFor(() => replicas.find((replica) => replica.isLeader), 'a leader');
    const applied: AppliedEntry[][] = replicas.map(() => []);
    replicas.forEach((replica, id) => replica.on('applied', (entry) => applied[id]?.push(entry)));
    await leader.propose(Array.from({ length: 50 }, (_, i) => Buffer.from(`before ${i}`)));

    // The leader's store "fails": it must stop leading, and another replica takes over.
    const needs = new Promise<number>((resolve) => leader.once('needs-state-transfer', resolve));
    leader.requestStateTransfer();
    await needs;
    const next = await waitFor(() => replicas.find((replica) => replica !== leader && replica.isLeader), 'a new leader');
    expect(leader.isLeader).to.equal(false);
    const lost = applied[leader.nodeId]?.length ?? 0;
    await next.propose(Array.from({ length: 50 }, (_, i) => Buffer.from(`while out ${i}`)));
    // The replica out for a state transfer applies nothing meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(applied[leader.nodeId]?.length).to.equal(lost);

    // Its snapshot comes from the new leader, taken after its latest entry.
    const donorEntries = applied[next.nodeId] as AppliedEntry[];
    const last = donorEntries[donorEntries.length - 1] as AppliedEntry;
    const resumed = new Promise<[number, boolean]>((resolve) => leader.once('state-transfer-resumed', (index, ok) => resolve([index, ok])));
    leader.resumeFromStateTransfer(last.index + 1, last.nextPosition);
    expect(await resumed).to.deep.equal([last.index + 1, true]);

    // From there on it applies what the others apply, entry for entry.
    await next.propose(Array.from({ length: 50 }, (_, i) => Buffer.from(`after ${i}`)));
    const tail = (entries: AppliedEntry[]) =>
      entries.filter((entry) => entry.index > last.index).flatMap((entry) => entry.commands.map((command) => `${entry.index}:${command.data.toString()}`));
    await waitFor(() => (tail(applied[leader.nodeId] ?? []).length === 50 ? true : undefined), 'the resumed replica applies the new entries');
    expect(tail(applied[leader.nodeId] ?? [])).to.deep.equal(tail(donorEntries));
    expect(leader.status().needsStateTransfer).to.equal(false);

    // A resume that is not needed is refused, and says so.
    const refused = new Promise<boolean>((resolve) => next.once('state-transfer-resumed', (_index, ok) => resolve(ok)));
    next.resumeFromStateTransfer(1, 0);
    expect(await refused).to.equal(false);
  });
});
