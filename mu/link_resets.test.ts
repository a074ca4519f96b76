import { expect } from 'chai';

import { LinkResets, parseLinkEntry } from './link_resets.js';

// Two replicas' LinkResets (0 and 1) and what each asked of its engine. The test plays
// the engine (applied()) and the control plane (delivering entries) by hand, so every
// interleaving is chosen.
class Side {
  readonly resets: boolean[] = []; // the hold of each reset asked for, in order
  releases = 0;
  readonly lines: string[] = [];
  readonly links: LinkResets;

  constructor(
    readonly id: number,
    readonly incarnation: string,
    resetAfterMs = 1000,
  ) {
    this.links = new LinkResets(incarnation, resetAfterMs, {
      reset: (_peer, hold) => this.resets.push(hold),
      release: () => (this.releases += 1),
      log: (line) => this.lines.push(line),
    });
  }

  get peer(): number {
    return 1 - this.id;
  }

  // The engine carries out every queued reset.
  applyAll(): void {
    while (this.resets.length > this.appliedCount) {
      this.appliedCount += 1;
      this.links.applied(this.peer);
    }
  }
  private appliedCount = 0;

  entry(): string {
    return this.links.entryFor(this.peer);
  }

  hear(other: Side): void {
    this.links.onPeerEntry(this.peer, other.incarnation, other.entry());
  }
}

function connectedPair(): [Side, Side] {
  const a = new Side(0, 'aa');
  const b = new Side(1, 'bb');
  for (const [side, other] of [[a, b] as const, [b, a] as const]) {
    side.links.connecting(side.peer, other.incarnation);
    side.links.applied(side.peer);
  }
  return [a, b];
}

describe('paired link resets', () => {
  it('parses what it formats; an empty entry is "not connected"', () => {
    expect(parseLinkEntry('0xab/3/2')).to.deep.equal({ incarnation: '0xab', resets: 3, answered: 2 });
    expect(parseLinkEntry('')).to.equal(undefined);
  });

  it('one side resets and holds, the other answers, the first releases; nothing while alive or unreachable', () => {
    const [a, b] = connectedPair();
    expect(a.entry()).to.equal('bb/0/0');
    a.links.check(1, true, true, 0);
    a.links.check(1, false, false, 100);
    a.links.check(1, false, false, 5000);
    expect(a.resets).to.deep.equal([], 'an unreachable peer cannot answer: no reset');
    a.links.check(1, false, true, 5100); // silent since 100, and its control plane answers now
    expect(a.resets).to.deep.equal([true], 'reset, held');
    expect(a.links.held(1)).to.equal(true);

    // Not told before the engine has done it.
    b.hear(a);
    expect(b.resets).to.deep.equal([]);
    a.applyAll();
    expect(a.entry()).to.equal('bb/1/0');
    b.hear(a);
    expect(b.resets).to.deep.equal([false], 'the answer resets without holding');
    a.hear(b);
    expect(a.releases).to.equal(0, 'b has not carried out its reset yet');
    b.applyAll();
    expect(b.entry()).to.equal('aa/0/1');
    a.hear(b);
    expect(a.releases).to.equal(1);
    expect(a.links.held(1)).to.equal(false);
    // Hearing the same entries again changes nothing.
    a.hear(b);
    b.hear(a);
    expect([a.resets.length, b.resets.length, a.releases]).to.deep.equal([1, 1, 1]);
  });

  it('both start a reset at once: each answers the other, each releases once its own is answered', () => {
    const [a, b] = connectedPair();
    for (const side of [a, b]) {
      side.links.check(side.peer, false, true, 0);
      side.links.check(side.peer, false, true, 1000);
      side.applyAll();
    }
    expect(a.resets).to.deep.equal([true]);
    expect(b.resets).to.deep.equal([true]);
    a.hear(b);
    b.hear(a);
    expect(a.resets).to.deep.equal([true, true], 'the answer keeps the hold: its own reset is not answered yet');
    expect(b.resets).to.deep.equal([true, true]);
    expect(a.releases + b.releases).to.equal(0);
    a.applyAll();
    b.applyAll();
    a.hear(b);
    b.hear(a);
    expect([a.releases, b.releases]).to.deep.equal([1, 1]);
    expect([a.entry(), b.entry()]).to.deep.equal(['bb/1/1', 'aa/1/1']);
  });

  it('waits twice as long before each further reset that did not help, and starts over once the peer is reached', () => {
    const [a, b] = connectedPair();
    const resetAndAnswer = (at: number): void => {
      a.links.check(1, false, true, at);
      a.applyAll();
      b.hear(a);
      b.applyAll();
      a.hear(b);
    };
    a.links.check(1, false, true, 0);
    resetAndAnswer(1000);
    expect(a.resets).to.have.length(1);
    a.links.check(1, false, true, 1100);
    resetAndAnswer(2100);
    expect(a.resets).to.have.length(1, 'the second wait is 2000 ms');
    resetAndAnswer(3100);
    expect(a.resets).to.have.length(2);
    a.links.check(1, true, true, 3200); // reached: the wait starts over
    a.links.check(1, false, true, 3300);
    resetAndAnswer(4300);
    expect(a.resets).to.have.length(3);
  });

  it('a peer that restarts (a new incarnation) is connected afresh: its old resets are forgotten', () => {
    const [a, b] = connectedPair();
    a.links.check(1, false, true, 0);
    a.links.check(1, false, true, 1000);
    a.applyAll();
    expect(a.links.held(1)).to.equal(true);
    const newB = new Side(1, 'cc');
    a.links.connecting(1, 'cc');
    expect(a.entry()).to.equal('bb/1/0', 'until the engine has connected to the new card, the old state is what is true');
    a.applyAll();
    a.links.applied(1);
    expect(a.entry()).to.equal('cc/0/0');
    expect(a.links.held(1)).to.equal(false);
    // The old incarnation's entries are ignored.
    a.links.onPeerEntry(1, 'bb', b.entry());
    expect(a.releases).to.equal(0);
    newB.links.connecting(0, 'aa');
    newB.links.applied(0);
    a.hear(newB);
    expect(a.resets).to.have.length(1, 'nothing to answer');
  });

  it('with resetAfterMs 0 it starts none, but still answers', () => {
    const quiet = new Side(0, 'aa', 0);
    const other = new Side(1, 'bb');
    quiet.links.connecting(1, 'bb');
    quiet.links.applied(1);
    other.links.connecting(0, 'aa');
    other.links.applied(0);
    quiet.links.check(1, false, true, 0);
    quiet.links.check(1, false, true, 10_000_000);
    expect(quiet.resets).to.deep.equal([]);
    other.links.check(0, false, true, 0);
    other.links.check(0, false, true, 1000);
    other.applyAll();
    quiet.hear(other);
    expect(quiet.resets).to.deep.equal([false]);
  });
});
