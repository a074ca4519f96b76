import { expect } from 'chai';

import { ControlPlane } from './control/control_plane.js';
import { Cleanup, LogSink, freePorts, planeOptions } from './control/test_support.js';
import { mayConnectTo, startingCards } from './member.js';

describe('cluster member: when a replica may connect to a peer', function () {
  this.timeout(10_000);
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  const card = (id: number, links: string[]) => ({ id, incarnation: `${1000 + id}`, card: Buffer.from('x'), links });

  it('only to a peer whose ends are not connected, or connected to this very incarnation', () => {
    expect(mayConnectTo(card(0, ['', '', '']), 1, 'b')).to.equal(true);
    expect(mayConnectTo(card(0, ['', 'b', '']), 1, 'b')).to.equal(true);
    // Replica 0 still points at replica 1's previous incarnation: not yet.
    expect(mayConnectTo(card(0, ['', 'a', '']), 1, 'b')).to.equal(false);
    // Its own card always.
    expect(mayConnectTo(card(1, ['', '', '']), 1, 'b')).to.equal(true);
  });

  it("a restarted replica starts with the peers that connected to its new incarnation, and waits for the others", async () => {
    const ports = await freePorts(3);
    const sink = new LogSink();
    const planes = ports.map((_, id) =>
      cleanup.plane(new ControlPlane(planeOptions(ports, id, sink, id === 1 ? { incarnation: '0xb' } : {}))),
    );
    const [zero, one, two] = planes;
    if (zero === undefined || one === undefined || two === undefined) throw new Error('three planes expected');
    // Replica 0 is still connected to replica 1's previous incarnation (0xa); replica 2 has
    // connected to the new one.
    zero.setLinks(['', '0xa/0/0', '']);
    two.setLinks(['', '0xb/0/0', '']);
    await Promise.all(planes.map((plane) => plane.start()));

    const started = Date.now();
    const cards = await startingCards(one, 1, '0xb', 3, 300, 5000);
    expect(Date.now() - started).to.be.at.least(250); // not all of them: it waited for the grace
    expect(cards.map((each) => each?.id)).to.deep.equal([undefined, 1, 2]);

    // Once replica 0 connects to the new incarnation, all three come at once.
    zero.setLinks(['', '0xb/0/0', '']);
    const again = Date.now();
    const all = await startingCards(one, 1, '0xb', 3, 3000, 5000);
    expect(all.map((each) => each?.id)).to.deep.equal([0, 1, 2]);
    expect(Date.now() - again).to.be.below(2000);
  });

  it('a replica without a majority it may connect to names why for each one missing', async () => {
    const ports = await freePorts(3);
    const sink = new LogSink();
    const one = cleanup.plane(new ControlPlane(planeOptions(ports, 1, sink, { incarnation: '0xb' })));
    const zero = cleanup.plane(new ControlPlane(planeOptions(ports, 0, sink)));
    zero.setLinks(['', '0xa/0/0', '']);
    await Promise.all([zero.start(), one.start()]);
    let failure: Error | undefined;
    await startingCards(one, 1, '0xb', 3, 100, 600).catch((error: Error) => (failure = error));
    expect(failure?.message).to.match(/0 \(still connected to an earlier incarnation of this replica\), 2 \(no card\)/);
  });
});
