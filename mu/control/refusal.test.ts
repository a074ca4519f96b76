// Everything a control plane must refuse, each over real TCP. Replica 0 runs a real control
// plane; replicas 1 and 2 are played by the test (raw protocol clients or fake listeners).
import net from 'node:net';

import { expect } from 'chai';

import { type ChannelCiphers, createNonce } from './auth.js';
import { ControlPlane, type ControlPlaneOptions } from './control_plane.js';
import { FrameDecoder, type FrameMessage, encodeFrame } from './frame.js';
import { cardAssociatedData } from './messages.js';
import {
  CLUSTER,
  Cleanup,
  HOST,
  LogSink,
  RawPeer,
  SECRET,
  WRONG_SECRET,
  cardOf,
  freePorts,
  nextRefusal,
  planeOptions,
} from './test_support.js';

describe('control plane: refusals', function () {
  this.timeout(5000);
  const cleanup = new Cleanup();
  let ports: number[];
  let sink: LogSink;
  let zero: ControlPlane;

  async function startZero(overrides: Partial<ControlPlaneOptions> = {}): Promise<ControlPlane> {
    zero = cleanup.plane(new ControlPlane(planeOptions(ports, 0, sink, overrides)));
    await zero.start();
    return zero;
  }

  async function connect(): Promise<RawPeer> {
    const peer = await RawPeer.connect(zero.port());
    cleanup.socket(peer.socket);
    return peer;
  }

  /** A connection authenticated as replica `id` with the cluster secret, and its ciphers. */
  async function welcomed(id: number): Promise<{ peer: RawPeer; ciphers: ChannelCiphers }> {
    const peer = await connect();
    const ciphers = await peer.authenticateAs(id, SECRET);
    if (ciphers === undefined) throw new Error(`a legitimate replica ${id} was not welcomed`);
    return { peer, ciphers };
  }

  /** A legitimate replica `id` can still complete the protocol with replica 0 and get its card. */
  async function expectStillServes(id = 2): Promise<void> {
    const { peer, ciphers } = await welcomed(id);
    peer.sendCard(ciphers, id, `${7000 + id}`, cardOf(id, 7));
    const reply = await peer.next();
    expect(reply).to.include({ type: 'card', id: 0, incarnation: '1000' });
    const opened = ciphers.receive.open(cardAssociatedData(0, '1000', ['', '', '']), Buffer.from(String(reply?.['card']), 'base64'));
    expect(opened?.equals(cardOf(0))).to.equal(true);
    expect(zero.cards().get(id)?.card.equals(cardOf(id, 7))).to.equal(true);
  }

  /** Sends `bytes` right after the challenge and expects a refusal matching `reason` and a close. */
  async function expectRefused(bytes: Buffer, reason: RegExp): Promise<RawPeer> {
    const peer = await connect();
    expect(await peer.next()).to.include({ type: 'challenge', listener_id: 0 });
    const refused = nextRefusal(zero, reason);
    peer.socket.write(bytes);
    const [, remote] = await refused;
    expect(remote).to.equal(`${HOST}:${peer.socket.localPort}`);
    expect(await peer.closesWithin(1000)).to.equal(true);
    expect(zero.counters().refused).to.equal(1);
    return peer;
  }

  beforeEach(async () => {
    ports = await freePorts(3);
    sink = new LogSink();
  });
  afterEach(() => cleanup.run());

  it('refuses a client with the wrong secret: no card, a counted refusal, and the cluster still forms', async () => {
    await startZero();
    const intruder = await connect();
    const refused = nextRefusal(zero, /authentication failed \(claimed replica 1\)/);
    expect(await intruder.authenticateAs(1, WRONG_SECRET)).to.equal(undefined);
    await refused;
    expect(intruder.isClosed).to.equal(true);
    expect(intruder.received.map((message) => message['type'])).to.deep.equal(['challenge']);
    expect(zero.counters()).to.deep.equal({ refused: 1, authenticated: 0 });
    // The log names the refusal without any secret or MAC material.
    const logged = sink.lines.join('\n');
    expect(logged).to.match(/refused incoming connection 127\.0\.0\.1:\d+: authentication failed/);
    for (const secretish of [SECRET.toString('utf8'), WRONG_SECRET.toString('utf8'), ...intruder.sentMacs]) {
      expect(logged).to.not.include(secretish);
    }

    const others = [1, 2].map((id) => cleanup.plane(new ControlPlane(planeOptions(ports, id, sink))));
    await Promise.all(others.map((plane) => plane.start()));
    for (const plane of [zero, ...others]) {
      expect((await plane.waitForCards(3000)).map((card) => card.id)).to.deep.equal([0, 1, 2]);
    }
  });

  it('a replica configured with the wrong secret gets no card and gives none', async () => {
    await startZero();
    const rogue = cleanup.plane(new ControlPlane(planeOptions(ports, 1, new LogSink(), { secret: WRONG_SECRET })));
    // Refused both ways: zero refuses the rogue's dial, the rogue refuses zero's dial.
    const zeroRefuses = nextRefusal(zero, /authentication failed \(claimed replica 1\)/);
    const rogueRefuses = nextRefusal(rogue, /authentication failed \(claimed replica 0\)/);
    await rogue.start();
    await Promise.all([zeroRefuses, rogueRefuses]);
    expect(zero.cards().has(1)).to.equal(false);
    expect(rogue.cards().has(0)).to.equal(false);
    expect(zero.counters().authenticated).to.equal(0);
  });

  it('never sends our card to a fake listener that cannot prove the secret', async () => {
    const received: FrameMessage[] = [];
    const fake = cleanup.server(
      net.createServer((socket) => {
        cleanup.socket(socket);
        socket.on('error', () => undefined);
        // Pretend to be replica 1, then "welcome" with a MAC made up without the secret.
        socket.write(encodeFrame({ type: 'challenge', cluster: CLUSTER, listener_id: 1, nonce: createNonce() }));
        const decoder = new FrameDecoder();
        socket.on('data', (chunk: Buffer) => {
          for (const message of decoder.push(chunk)) {
            received.push(message);
            if (message['type'] === 'auth') socket.write(encodeFrame({ type: 'welcome', mac: createNonce() }));
          }
        });
      }),
    );
    await new Promise<void>((resolve) => fake.listen(ports[1], HOST, resolve));
    await startZero();
    const [reason] = await nextRefusal(zero, /listener failed to prove the cluster secret \(claimed replica 1\)/);
    expect(reason).to.not.include(SECRET.toString('utf8'));
    // Give a card that was (wrongly) sent after the welcome time to arrive.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(received.length).to.be.at.least(1);
    expect(received.every((message) => message['type'] === 'auth')).to.equal(true);
    expect(JSON.stringify(received)).to.not.include(cardOf(0).toString('base64'));
    expect(zero.counters().refused).to.be.at.least(1);
  });

  it('refuses garbage bytes and keeps serving others', async () => {
    await startZero();
    const garbage = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('hello')]);
    await expectRefused(garbage, /malformed frame: frame of 5 bytes is not valid UTF-8 JSON/);
    await expectStillServes();
  });

  it('refuses an oversize length prefix (an HTTP request, say) and keeps serving others', async () => {
    await startZero();
    const httpRequest = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expectRefused(httpRequest, /malformed frame: frame length \d+ exceeds the 131072-byte limit/);
    await expectStillServes();
  });

  it('refuses a card sent before the handshake, and never answers it with ours', async () => {
    await startZero();
    const early = encodeFrame({ type: 'card', id: 1, incarnation: '1', links: ['', '', ''], card: cardOf(1).toString('base64') });
    const peer = await expectRefused(early, /unexpected card message while awaiting-auth/);
    expect(peer.received.map((message) => message['type'])).to.deep.equal(['challenge']);
    expect(zero.cards().has(1)).to.equal(false);
    await expectStillServes();
  });

  it('refuses a card for another replica id from an authenticated peer', async () => {
    await startZero();
    const { peer, ciphers } = await welcomed(1);
    const refused = nextRefusal(zero, /replica 1 sent a card for replica 2/);
    peer.sendCard(ciphers, 2, '99', cardOf(2, 9));
    await refused;
    expect(await peer.closesWithin(1000)).to.equal(true);
    expect(zero.cards().has(2)).to.equal(false);
    // Replica 0 answers only a valid card with its own.
    expect(peer.received.map((message) => message['type'])).to.deep.equal(['challenge', 'welcome']);
    await expectStillServes(2);
  });

  it('refuses a sealed card that was altered on the wire', async () => {
    await startZero();
    const { peer, ciphers } = await welcomed(1);
    const sealed = ciphers.send.seal(cardAssociatedData(1, '5', ['', '', '']), cardOf(1));
    sealed[0] = (sealed[0] ?? 0) ^ 1;
    const refused = nextRefusal(zero, /card from replica 1 failed to open/);
    peer.send({ type: 'card', id: 1, incarnation: '5', links: ['', '', ''], card: sealed.toString('base64') });
    await refused;
    expect(await peer.closesWithin(1000)).to.equal(true);
    expect(zero.cards().has(1)).to.equal(false);
  });

  it('refuses a card whose links were altered on the wire, or that has not one link per replica', async () => {
    await startZero();
    const { peer, ciphers } = await welcomed(1);
    const sealed = ciphers.send.seal(cardAssociatedData(1, '5', ['', '', '']), cardOf(1));
    const refused = nextRefusal(zero, /card from replica 1 failed to open/);
    peer.send({ type: 'card', id: 1, incarnation: '5', links: ['1000/0/0', '', ''], card: sealed.toString('base64') });
    await refused;
    expect(await peer.closesWithin(1000)).to.equal(true);
    expect(zero.cards().has(1)).to.equal(false);

    const { peer: short, ciphers: shortCiphers } = await welcomed(1);
    const refusedShort = nextRefusal(zero, /card from replica 1 has 2 links, not one per replica/);
    short.sendCard(shortCiphers, 1, '5', cardOf(1), ['', '']);
    await refusedShort;
    expect(zero.cards().has(1)).to.equal(false);
    await expectStillServes(2);
  });

  it('pings an open connection, and closes one that falls silent: that peer stops counting as reachable', async () => {
    await startZero({ pingIntervalMs: 50, silenceTimeoutMs: 300 });
    const { peer, ciphers } = await welcomed(1);
    peer.sendCard(ciphers, 1, '5', cardOf(1));
    expect((await peer.next())?.['type']).to.equal('card');
    expect((await peer.next())?.['type']).to.equal('ping');
    expect(zero.reachablePeers().has(1)).to.equal(true);
    // A ping keeps it open past the timeout.
    await new Promise((resolve) => setTimeout(resolve, 200));
    peer.send({ type: 'ping' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(zero.reachablePeers().has(1)).to.equal(true, 'heard from 200 ms ago');
    // Then silence: closed, and no longer reachable.
    expect(await peer.closesWithin(1000)).to.equal(true);
    expect(zero.reachablePeers().has(1)).to.equal(false);
    expect(sink.lines.some((line) => /replica 1 silent for \d+ ms .*: closing the connection/.test(line))).to.equal(true);
    await expectStillServes(2);
  });

  it('refuses a different card under an incarnation it already knows', async () => {
    await startZero();
    const { peer: first, ciphers: firstCiphers } = await welcomed(1);
    first.sendCard(firstCiphers, 1, '42', cardOf(1, 0));
    expect(await first.next()).to.include({ type: 'card', id: 0 });

    const { peer: second, ciphers: secondCiphers } = await welcomed(1);
    const refused = nextRefusal(zero, /replica 1 sent a different card under the same incarnation 42/);
    second.sendCard(secondCiphers, 1, '42', cardOf(1, 1));
    await refused;
    expect(zero.cards().get(1)?.card.equals(cardOf(1, 0))).to.equal(true);
  });

  it('closes a connection that stays silent past the handshake timeout', async () => {
    await startZero({ handshakeTimeoutMs: 200 });
    const peer = await connect();
    const started = Date.now();
    expect(await peer.next()).to.include({ type: 'challenge' });
    const [reason] = await nextRefusal(zero, /handshake timed out after 200 ms \(awaiting-auth\)/);
    expect(reason).to.be.a('string');
    expect(await peer.closesWithin(500)).to.equal(true);
    expect(Date.now() - started).to.be.within(150, 1500);
    await expectStillServes();
  });

  it('caps the connections still in their handshake', async () => {
    await startZero({ maxUnauthenticatedConnections: 2 });
    const silent = [await connect(), await connect()];
    for (const peer of silent) expect(await peer.next()).to.include({ type: 'challenge' });
    const refused = nextRefusal(zero, /too many connections still in their handshake \(2\)/);
    const third = await connect();
    await refused;
    expect(await third.closesWithin(1000)).to.equal(true);
    expect(third.received).to.deep.equal([]);
    // Slots free up as soon as those connections go away.
    for (const peer of silent) {
      peer.socket.destroy();
      await peer.closed;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expectStillServes();
  });
});
