import fs from 'node:fs';

import { expect } from 'chai';

import { freePorts } from './free_port.js';
import { startAll, startInTurn } from './start_all.js';

class Thing {
  stopped = false;
  constructor(readonly name: string) {}
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

describe('test support: starting several things', () => {
  it('startAll stops what started, and what it was also given, when one start fails', async () => {
    const started = new Thing('a');
    const extra = new Thing('server');
    const failing = Promise.reject(new Error('EADDRINUSE'));
    const error = await startAll([Promise.resolve(started), failing], [extra]).catch((reason: unknown) => reason);
    expect((error as Error).message).to.equal('EADDRINUSE');
    expect([started.stopped, extra.stopped]).to.deep.equal([true, true]);
    const all = await startAll([Promise.resolve(new Thing('b')), Promise.resolve(new Thing('c'))]);
    expect(all.map((thing) => [thing.name, thing.stopped])).to.deep.equal([['b', false], ['c', false]]);
  });

  it('startInTurn stops those before the one that failed, and starts none after it', async () => {
    const made: Thing[] = [];
    const error = await startInTurn(4, async (index) => {
      if (index === 2) throw new Error('no such binary');
      const thing = new Thing(String(index));
      made.push(thing);
      return thing;
    }).catch((reason: unknown) => reason);
    expect((error as Error).message).to.equal('no such binary');
    expect(made.map((thing) => [thing.name, thing.stopped])).to.deep.equal([['0', true], ['1', true]]);
  });

  it('freePorts gives distinct ports below the kernel ephemeral range, even when asked concurrently', async () => {
    const batches = await Promise.all([freePorts(20), freePorts(20)]);
    const ports = batches.flat();
    expect(new Set(ports).size).to.equal(40);
    const ephemeralLowest = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    // With an ephemeral range that starts this low, freePort takes the kernel's ports.
    if (ephemeralLowest >= 11_000) for (const port of ports) expect(port).to.be.within(10_000, ephemeralLowest - 1);
  });
});
