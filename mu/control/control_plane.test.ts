import net from 'node:net';

import { expect } from 'chai';

import { ControlPlane, type ControlPlaneOptions, type PeerAddress, type PeerCard } from './control_plane.js';
import { Cleanup, HOST, LogSink, SECRET, cardOf, freePorts, nextCard, planeOptions } from './test_support.js';

function summary(cards: PeerCard[]): Array<[number, string, string]> {
  return cards.map((card) => [card.id, card.incarnation, card.card.toString('utf8')]);
}

describe('control plane: card exchange', function () {
  this.timeout(5000);
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  async function startCluster(size: number, sink: LogSink): Promise<{ ports: number[]; planes: ControlPlane[] }> {
    const ports = await freePorts(size);
    const planes = ports.map((_, id) => cleanup.plane(new ControlPlane(planeOptions(ports, id, sink))));
    await Promise.all(planes.map((plane) => plane.start()));
    return { ports, planes };
  }

  it('three replicas exchange cards; every replica gets all three in id order', async () => {
    const sink = new LogSink();
    const { planes } = await startCluster(3, sink);
    const expected = [0, 1, 2].map((id): [number, string, string] => [id, `${1000 + id}`, cardOf(id).toString('utf8')]);
    for (const plane of planes) {
      expect(summary(await plane.waitForCards(3000))).to.deep.equal(expected);
      expect([...plane.cards().keys()].sort()).to.deep.equal([0, 1, 2]);
    }
    // Each replica completes at least one handshake per peer (its dial or the peer's).
    for (const plane of planes) {
      expect(plane.counters().refused).to.equal(0);
      expect(plane.counters().authenticated).to.be.at.least(2);
    }
    // Secrets and cards never reach the log.
    const logged = sink.lines.join('\n');
    expect(logged).to.not.include(SECRET.toString('utf8'));
    expect(logged).to.not.include(SECRET.toString('hex'));
    expect(logged).to.not.include(cardOf(1).toString('utf8'));
  });

  it('a restarted replica (new card, new incarnation) is learned by the others', async () => {
    const sink = new LogSink();
    const { ports, planes } = await startCluster(3, sink);
    await Promise.all(planes.map((plane) => plane.waitForCards(3000)));
    const [zero, one, two] = planes;
    if (zero === undefined || one === undefined || two === undefined) throw new Error('cluster of 3 expected');

    const seenByZero: PeerCard[] = [];
    zero.on('card', (card) => seenByZero.push(card));
    const isNewTwo = (card: PeerCard): boolean => card.id === 2 && card.incarnation === '0x2b';
    const learned = [nextCard(zero, isNewTwo), nextCard(one, isNewTwo)];
    await two.close();
    const restartedOptions = planeOptions(ports, 2, sink, { card: cardOf(2, 1), incarnation: '0x2b' });
    const restarted = cleanup.plane(new ControlPlane(restartedOptions));
    await restarted.start();

    for (const card of await Promise.all(learned)) {
      expect(card.card.toString('utf8')).to.equal(cardOf(2, 1).toString('utf8'));
    }
    for (const plane of [zero, one]) {
      expect(plane.cards().get(2)?.incarnation).to.equal('0x2b');
      expect(plane.cards().get(2)?.card.equals(cardOf(2, 1))).to.equal(true);
    }
    expect(summary(await restarted.waitForCards(3000)).map(([id, incarnation]) => [id, incarnation])).to.deep.equal([
      [0, '1000'],
      [1, '1001'],
      [2, '0x2b'],
    ]);
    // Both connections carry the new card, but the change is announced once.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(seenByZero.map((card) => [card.id, card.incarnation])).to.deep.equal([[2, '0x2b']]);
    expect(sink.lines.some((line) => /replica 2 restarted: incarnation 1002 -> 0x2b/.test(line))).to.equal(true);
  });

  it('links: a replica that connects to another incarnation tells every peer, sealed with its card', async () => {
    const sink = new LogSink();
    const { planes } = await startCluster(3, sink);
    await Promise.all(planes.map((plane) => plane.waitForCards(3000)));
    const [zero, one, two] = planes;
    if (zero === undefined || one === undefined || two === undefined) throw new Error('cluster of 3 expected');
    expect(one.cards().get(0)?.links).to.deep.equal(['', '', '']);

    const relinked = [nextCard(one, (card) => card.id === 0), nextCard(two, (card) => card.id === 0)];
    zero.setLinks(['', '1001/0/0', '']);
    for (const card of await Promise.all(relinked)) {
      expect(card.links).to.deep.equal(['', '1001/0/0', '']);
      expect(card.incarnation).to.equal('1000');
    }
    expect(zero.cards().get(0)?.links).to.deep.equal(['', '1001/0/0', '']);
    // The same links again send nothing.
    const quiet = nextCard(one, (card) => card.id === 0, 300).then(
      () => 'sent',
      () => 'nothing',
    );
    zero.setLinks(['', '1001/0/0', '']);
    expect(await quiet).to.equal('nothing');
    expect(() => zero.setLinks(['1000/0/0', '', ''])).to.throw(RangeError, /'' for replica 0 itself/);
    expect(() => zero.setLinks(['', '1001', ''])).to.throw(RangeError);
    expect(() => zero.setLinks(['', ''])).to.throw(RangeError);
  });

  it('waitForCards rejects after its timeout naming the replicas still missing', async () => {
    const ports = await freePorts(3);
    const plane = cleanup.plane(new ControlPlane(planeOptions(ports, 0, new LogSink())));
    await plane.start();
    const started = Date.now();
    let failure: unknown;
    await plane.waitForCards(150).catch((error: unknown) => (failure = error));
    expect(Date.now() - started).to.be.at.least(140);
    expect(String(failure)).to.match(/waited 150 ms and still lacks the cards of replicas 1, 2/);
    expect(plane.cards().size).to.equal(1);
  });

  it('close() rejects a pending waitForCards and a single replica has its own card at once', async () => {
    const ports = await freePorts(2);
    const plane = cleanup.plane(new ControlPlane(planeOptions(ports, 1, new LogSink())));
    await plane.start();
    const pending = plane.waitForCards(5000).then(
      () => 'resolved',
      (error: unknown) => String(error),
    );
    await plane.close();
    expect(await pending).to.match(/closed while waiting for cards/);

    const [onlyPort] = await freePorts(1);
    const alone = cleanup.plane(new ControlPlane(planeOptions([onlyPort ?? 0], 0, new LogSink())));
    await alone.start();
    expect(summary(await alone.waitForCards(10))).to.deep.equal([[0, '1000', cardOf(0).toString('utf8')]]);
  });

  it('close() racing start() leaves the port free, and port() reports a port the OS chose', async () => {
    const [port] = await freePorts(1);
    if (port === undefined) throw new Error('no port');
    const plane = cleanup.plane(new ControlPlane(planeOptions([port, port], 0, new LogSink())));
    const starting = plane.start();
    await plane.close();
    await starting;
    const probe = cleanup.server(net.createServer());
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, HOST, resolve);
    });

    const anywhere = cleanup.plane(new ControlPlane(planeOptions([0, port], 0, new LogSink())));
    await anywhere.start();
    expect(anywhere.port()).to.be.above(0).and.not.equal(port);
  });

  it('start() rejects clearly when the port is taken', async () => {
    const [port] = await freePorts(1);
    if (port === undefined) throw new Error('no port');
    const squatter = cleanup.server(net.createServer());
    await new Promise<void>((resolve) => squatter.listen(port, HOST, resolve));
    const plane = cleanup.plane(new ControlPlane(planeOptions([port, port + 1], 0, new LogSink())));
    let failure: unknown;
    await plane.start().catch((error: unknown) => (failure = error));
    const expected = `replica 0 cannot listen on 127.0.0.1:${port}: the address is already in use`;
    expect(String(failure)).to.include(expected);
  });

  it('refuses bad options with a clear error', () => {
    const ports = [4000, 4001];
    const make = (overrides: Partial<ControlPlaneOptions>) => (): ControlPlane =>
      new ControlPlane(planeOptions(ports, 0, new LogSink(), overrides));
    const twoPeers = (second: PeerAddress): PeerAddress[] => [{ id: 0, host: HOST, port: 4000 }, second];
    expect(make({ secret: Buffer.alloc(15) })).to.throw(/secret must be a Buffer of at least 16 bytes/);
    expect(make({ clusterName: 'a|b' })).to.throw(/clusterName/);
    expect(make({ incarnation: 'new' })).to.throw(/incarnation/);
    expect(make({ card: Buffer.alloc(64 * 1024 + 1) })).to.throw(/card must be/);
    expect(make({ selfId: 5 })).to.throw(/selfId 5 is not one of the peers/);
    expect(make({ peers: twoPeers({ id: 2, host: HOST, port: 4002 }) })).to.throw(/peer ids must be 0\.\.1/);
    expect(make({ peers: twoPeers({ id: 1, host: HOST, port: 0 }) })).to.throw(/peer 1 has port 0/);
    expect(make({ handshakeTimeoutMs: 0 })).to.throw(/handshakeTimeoutMs/);
    expect(make({ pingIntervalMs: 0 })).to.throw(/pingIntervalMs/);
    expect(make({ pingIntervalMs: 1000, silenceTimeoutMs: 1500 })).to.throw(/silenceTimeoutMs \(1500\) must be at least twice pingIntervalMs/);
    expect(make({})).to.not.throw();
  });
});
