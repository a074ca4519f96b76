// A network partition, injected into the shm fabric (mu/testing/partition.ts): the leader
// is cut off from both followers over the fabric while the hosts still talk over TCP.
// shm only: on verbs the multi-host test in the Soft-RoCE VM cuts real links.
import { expect } from 'chai';

import { MemberCluster } from './testing/member_cluster.js';
import { burst, eventually, expectSameHistory } from './testing/member_checks.js';
import { cutOff, heal } from './testing/partition.js';

describe('a network partition (shm fault injection)', function () {
  this.timeout(120000);
  let cluster: MemberCluster | undefined;

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('a leader cut off with commands in flight settles each (UNKNOWN, never a hang); the majority elects another; healed, it rejoins and every history agrees', async () => {
    const unknownOutcomeMs = 1500;
    cluster = await MemberCluster.start({ fabric: 'shm', unknownOutcomeMs });
    const old = await cluster.leader();
    expect((await burst(cluster, old, 'before', 100)).every((event) => event.event === 'acked')).to.equal(true);
    const others = [0, 1, 2].filter((id) => id !== old);
    cutOff(cluster.clusterName, old, others);
    // Proposed at once: the old leader takes them before its writes start failing.
    const started = Date.now();
    const cut = await burst(cluster, old, 'cut', 20, 20);
    const settledMs = Date.now() - started;
    const codes = cut.map((event) => (event.event === 'acked' ? 'acked' : String(event['code'])));
    expect(codes, 'every command settled').to.have.length(20);
    expect(codes.filter((code) => code !== 'UNKNOWN' && code !== 'NOT_LEADER'), codes.join(' ')).to.deep.equal([]);
    expect(codes, 'the commands taken before the writes failed').to.include('UNKNOWN');
    expect(settledMs, 'the unknown ones settle after the bound, not before').to.be.at.least(unknownOutcomeMs - 100);
    const successor = await cluster.leader(others);
    expect((await burst(cluster, successor, 'majority', 100)).every((event) => event.event === 'acked')).to.equal(true);
    heal(cluster.clusterName, old);
    const member = (id: number) => (cluster as MemberCluster).member(id);
    await eventually(async () => (await member(old).applied()).length === (await member(successor).applied()).length, 'the healed replica catches up', 30000);
    const histories = await Promise.all([0, 1, 2].map((id) => member(id).applied()));
    expectSameHistory(histories);
    // Whatever the UNKNOWN commands became, every replica agrees on it.
    const committedCut = (histories[successor] as string[]).filter((entry) => entry.includes(':cut-'));
    expect(committedCut.length).to.be.at.most(codes.filter((code) => code === 'UNKNOWN').length);
  });

  it('a link cut while both ends stay up gets a paired reset (one end holds until the other has reset); healed, the follower catches up', async () => {
    cluster = await MemberCluster.start({ fabric: 'shm', linkResetMs: 500 });
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    expect((await burst(cluster, leader, 'before', 50)).every((event) => event.event === 'acked')).to.equal(true);
    const logged = (id: number, pattern: RegExp) =>
      (cluster as MemberCluster).member(id).waitFor((event) => event.event === 'log' && pattern.test(String(event['line'])), String(pattern), 20000);
    // Either end may start it (both see the other go silent); each release follows an answer.
    const started = Promise.race([logged(leader, /resetting the link \(reset 1\)/), logged(follower, /resetting the link \(reset 1\)/)]);
    const released = Promise.race([logged(leader, /reset its end of the link too/), logged(follower, /reset its end of the link too/)]);
    const answered = Promise.race([logged(leader, /reset its link to this one/), logged(follower, /reset its link to this one/)]);
    cutOff(cluster.clusterName, follower, [leader]);
    await Promise.all([started, answered, released]);
    // The other follower keeps the majority throughout.
    expect((await burst(cluster, leader, 'cut', 50)).every((event) => event.event === 'acked')).to.equal(true);
    heal(cluster.clusterName, follower);
    expect((await burst(cluster, leader, 'healed', 50)).every((event) => event.event === 'acked')).to.equal(true);
    const member = (id: number) => (cluster as MemberCluster).member(id);
    await eventually(async () => (await member(follower).applied()).length === 150, 'the follower catches up over the reset link', 30000);
    expectSameHistory(await Promise.all([0, 1, 2].map((id) => member(id).applied())));
  });
});
