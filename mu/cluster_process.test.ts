// Process-level tests: three Node processes, each a cluster member (engine thread and
// control plane) over shm, driven through mu/testing/member_process.ts. Failures are
// real signals: SIGSTOP, SIGCONT, SIGKILL and a restart of the same replica id.
import { expect } from 'chai';

import { MemberCluster } from './testing/member_cluster.js';
import { burst, eventually, expectSameHistory } from './testing/member_checks.js';

describe('cluster members as processes (shm)', function () {
  this.timeout(120000);
  let cluster: MemberCluster | undefined;

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('replicates proposals made at the leader to every replica, in the same order', async () => {
    cluster = await MemberCluster.start();
    const leader = await cluster.leader();
    const outcomes = await burst(cluster, leader, 'a', 500);
    expect(outcomes.filter((event) => event.event === 'acked')).to.have.length(500);
    await eventually(async () => (await cluster!.member(2).applied()).length === 500, 'all applied at replica 2');
    const histories = await Promise.all([0, 1, 2].map((id) => cluster!.member(id).applied()));
    for (const history of histories) expect(history).to.have.length(500);
    expectSameHistory(histories);
    const follower = (leader + 1) % 3;
    const refused = await burst(cluster, follower, 'f', 3);
    expect(refused.map((event) => event['code'])).to.deep.equal(['NOT_LEADER', 'NOT_LEADER', 'NOT_LEADER']);
  });

  it('SIGSTOP of the leader: another takes over; SIGCONT: the old one rejoins as a follower', async () => {
    cluster = await MemberCluster.start();
    const old = await cluster.leader();
    expect((await burst(cluster, old, 'before', 100)).every((event) => event.event === 'acked')).to.equal(true);
    cluster.member(old).signal('SIGSTOP');
    const others = [0, 1, 2].filter((id) => id !== old);
    const successor = await cluster.leader(others);
    expect(successor).to.not.equal(old);
    const during = await burst(cluster, successor, 'during', 100);
    expect(during.every((event) => event.event === 'acked')).to.equal(true);
    cluster.member(old).signal('SIGCONT');
    await eventually(async () => (await cluster!.member(old).status()).role !== 'leader', 'the old leader steps down');
    await eventually(async () => (await cluster!.member(old).applied()).length === 200, 'the old leader applies the new reign');
    expect(await cluster.leader()).to.equal(successor);
    expectSameHistory(await Promise.all([0, 1, 2].map((id) => cluster!.member(id).applied())));
  });

  it('SIGKILL of the leader in the middle of a burst: no acknowledged command is lost, no index differs', async () => {
    cluster = await MemberCluster.start();
    const old = await cluster.leader();
    const member = cluster.member(old);
    member.send({ op: 'burst', prefix: 'k', count: 20000, chunk: 20 });
    await member.waitFor(
      () => member.events.filter((event) => event.event === 'acked').length >= 300,
      'the first acknowledgements',
    );
    member.signal('SIGKILL');
    await member.exited;
    const acknowledged = member.events.filter((event) => event.event === 'acked').map((event) => event['data'] as string);
    expect(acknowledged.length).to.be.at.least(300).and.below(20000, 'the kill came in the middle of the burst');
    const survivors = [0, 1, 2].filter((id) => id !== old);
    const successor = await cluster.leader(survivors);
    expect((await burst(cluster, successor, 'after', 50)).every((event) => event.event === 'acked')).to.equal(true);
    const histories = await Promise.all(survivors.map((id) => cluster!.member(id).applied()));
    await eventually(
      async () => {
        const latest = await Promise.all(survivors.map((id) => cluster!.member(id).applied()));
        return latest.every((history) => history.some((item) => item.endsWith(':after-49')));
      },
      'the survivors apply the new reign',
    );
    const final = await Promise.all(survivors.map((id) => cluster!.member(id).applied()));
    expectSameHistory(final);
    expect(histories[0]?.length).to.be.greaterThan(0);
    for (const history of final) {
      const applied = new Set(history.map((item) => item.slice(item.indexOf(':') + 1)));
      const lost = acknowledged.filter((data) => !applied.has(data));
      expect(lost, 'acknowledged commands missing on a survivor').to.deep.equal([]);
    }
    cluster.members[old] = undefined;
  });

  it('a majority starts without the third replica (its host is down), which joins when it comes and catches up from the log', async () => {
    cluster = await MemberCluster.start({ launch: [0, 1] });
    const leader = await cluster.leader([0, 1]);
    expect(cluster.member(leader).events.some((event) => event.event === 'log' && /started without replica\(s\) 2/.test(String(event['line'])))).to.equal(true);
    expect((await burst(cluster, leader, 'early', 300)).every((event) => event.event === 'acked')).to.equal(true);
    const late = cluster.launch(2);
    await late.waitFor((event) => event.event === 'started', 'the late replica', 60000);
    expect((await burst(cluster, leader, 'late', 100)).every((event) => event.event === 'acked')).to.equal(true);
    await eventually(async () => (await late.applied()).length === 400, 'the late replica catches up', 30000);
    expectSameHistory(await Promise.all([0, 1, 2].map((id) => cluster!.member(id).applied())));
  });

  it('SIGKILL of a follower and a restart: it reconnects and catches up from the log', async () => {
    cluster = await MemberCluster.start();
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    expect((await burst(cluster, leader, 'one', 300)).every((event) => event.event === 'acked')).to.equal(true);
    cluster.member(follower).signal('SIGKILL');
    await cluster.member(follower).exited;
    expect((await burst(cluster, leader, 'two', 100)).every((event) => event.event === 'acked')).to.equal(true);
    const restarted = cluster.launch(follower);
    await restarted.waitFor((event) => event.event === 'started', 'the restart', 60000);
    expect((await burst(cluster, leader, 'three', 100)).every((event) => event.event === 'acked')).to.equal(true);
    await eventually(async () => (await restarted.applied()).length === 500, 'the restarted follower catches up', 30000);
    expectSameHistory(await Promise.all([0, 1, 2].map((id) => cluster!.member(id).applied())));
  });
});
