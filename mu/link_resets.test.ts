import { expect } from 'chai';

import { LinkResets, parseLinkEntry } from './link_resets.js';

// Two replicas' LinkResets (0 and 1) and what each asked of its engine. The test plays
// the engine (carrying out queued changes, or failing them) and the control plane
// (delivering one side's entry to the other) by hand, so every interleaving is chosen.
class Side {
  readonly changes: Array<{ change: number; kind: 'reset' | 'hold' | 'release' }> = [];
  readonly lines: string[] = [];
  readonly links: LinkResets;
  private nextChange = 1;
  private carriedOut = 0;
  clockMs = 0;

  constructor(
    readonly id: number,
    readonly incarnation: string,
    resetAfterMs = 1000,
  ) {
    this.links = new LinkResets(
      incarnation,
      resetAfterMs,
      {
        reset: (_peer, hold) => this.queue(hold ? 'hold' : 'reset'),
        release: () => this.queue('release'),
        log: (line) => this.lines.push(line),
      },
      () => this.clockMs,
      5000,
    );
  }

  private queue(kind: 'reset' | 'hold' | 'release'): number {
    const change = this.nextChange++;
    this.changes.push({ change, kind });
    return change;
  }

  get peer(): number {
    return 1 - this.id;
  }

  kinds(): string[] {
    return this.changes.map((change) => change.kind);
  }

  // The engine carries out every queued change (or fails the next one).
  applyAll(): Array<'retry' | 'shown' | 'nothing'> {
    const outcomes: Array<'retry' | 'shown' | 'nothing'> = [];
    while (this.carriedOut < this.changes.length) {
      const { change } = this.changes[this.carriedOut++] as { change: number };
      outcomes.push(this.links.applied(this.peer, change, true));
    }
    return outcomes;
  }
  failNext(): 'retry' | 'shown' | 'nothing' {
    const { change } = this.changes[this.carriedOut++] as { change: number };
    return this.links.applied(this.peer, change, false);
  }

  entry(): string {
    return this.links.entryFor(this.peer);
  }

  hear(other: Side): void {
    this.links.onPeerEntry(this.peer, other.incarnation, other.entry());
  }

  silentFor(ms: number): void {
    this.links.check(this.peer, false, true);
    this.clockMs += ms;
    this.links.check(this.peer, false, true);
  }
}

function connectedPair(): [Side, Side] {
  const a = new Side(0, 'aa');
  const b = new Side(1, 'bb');
  a.links.connectedAtStart(1, 'bb');
  b.links.connectedAtStart(0, 'aa');
  return [a, b];
}

// a starts a reset, b answers, a releases: everything carried out.
function completeReset(a: Side, b: Side): void {
  a.silentFor(a.clockMs === 0 ? 1000 : 100_000);
  a.applyAll();
  b.hear(a);
  b.applyAll();
  a.hear(b);
  a.applyAll();
}

describe('paired link resets', () => {
  it('parses what it formats; an empty entry is "not connected"', () => {
    expect(parseLinkEntry('0xab/3/2')).to.deep.equal({ incarnation: '0xab', resets: 3, answered: 2 });
    expect(parseLinkEntry('')).to.equal(undefined);
  });

  it('one side resets and holds, the other answers, the first connects again; nothing while alive or unreachable', () => {
    const [a, b] = connectedPair();
    expect(a.entry()).to.equal('bb/0/0');
    a.links.check(1, true, true);
    a.links.check(1, false, false);
    a.clockMs = 5000;
    a.links.check(1, false, false);
    expect(a.kinds()).to.deep.equal([], 'an unreachable peer cannot answer: no reset');
    a.links.check(1, false, true); // silent since 0, and its control plane answers now
    expect(a.kinds()).to.deep.equal(['hold']);
    expect(a.links.held(1)).to.equal(true);

    // Not told before the engine has done it.
    expect(a.entry()).to.equal('bb/0/0');
    b.hear(a);
    expect(b.kinds()).to.deep.equal([]);
    expect(a.applyAll()).to.deep.equal(['shown']);
    expect(a.entry()).to.equal('bb/1/0');
    b.hear(a);
    expect(b.kinds()).to.deep.equal(['reset'], 'the answer resets and connects at once');
    a.hear(b);
    expect(a.kinds()).to.deep.equal(['hold'], 'b has not carried out its reset yet');
    b.applyAll();
    expect(b.entry()).to.equal('aa/0/1');
    a.hear(b);
    expect(a.kinds()).to.deep.equal(['hold', 'release']);
    expect(a.links.held(1)).to.equal(false);
    expect(a.applyAll()).to.deep.equal(['nothing']);
    // Hearing the same entries again changes nothing.
    a.hear(b);
    b.hear(a);
    expect([a.changes.length, b.changes.length]).to.deep.equal([2, 1]);
  });

  it('both start a reset at once: each answers the other (still held), each connects again once its own is answered', () => {
    const [a, b] = connectedPair();
    for (const side of [a, b]) {
      side.silentFor(1000);
      side.applyAll();
    }
    a.hear(b);
    b.hear(a);
    expect(a.kinds()).to.deep.equal(['hold', 'hold'], 'the answer keeps the ends unconnected: its own reset is not answered yet');
    expect(b.kinds()).to.deep.equal(['hold', 'hold']);
    a.applyAll();
    b.applyAll();
    a.hear(b);
    b.hear(a);
    expect(a.kinds().at(-1)).to.equal('release');
    expect(b.kinds().at(-1)).to.equal('release');
    expect([a.entry(), b.entry()]).to.deep.equal(['bb/1/1', 'aa/1/1']);
  });

  it('waits twice as long before each further reset that did not help, and starts over once the peer is reached', () => {
    const [a, b] = connectedPair();
    completeReset(a, b);
    expect(a.kinds().filter((kind) => kind === 'hold')).to.have.length(1);
    a.links.check(1, false, true);
    a.clockMs += 1500;
    a.links.check(1, false, true);
    expect(a.kinds().filter((kind) => kind === 'hold')).to.have.length(1, 'the second wait is 2000 ms');
    a.clockMs += 500;
    a.links.check(1, false, true);
    expect(a.kinds().filter((kind) => kind === 'hold')).to.have.length(2);
    a.applyAll();
    b.hear(a);
    b.applyAll();
    a.hear(b);
    a.applyAll();
    a.links.check(1, true, true); // reached: the wait starts over
    a.links.check(1, false, true);
    a.clockMs += 1000;
    a.links.check(1, false, true);
    expect(a.kinds().filter((kind) => kind === 'hold')).to.have.length(3);
  });

  it('a held reset with no answer is started again after the hold timeout', () => {
    const [a] = connectedPair();
    a.silentFor(1000);
    a.applyAll();
    expect(a.entry()).to.equal('bb/1/0');
    a.clockMs += 4999;
    a.links.check(1, false, true);
    expect(a.kinds()).to.deep.equal(['hold']);
    a.clockMs += 1;
    a.links.check(1, false, true);
    expect(a.kinds()).to.deep.equal(['hold', 'hold']);
    a.applyAll();
    expect(a.entry()).to.equal('bb/2/0', 'a new count, so the peer sees the request again');
  });

  it("the answer's reset fails: the peer connects again as a held reset of its own, and both get answered", () => {
    const [a, b] = connectedPair();
    a.silentFor(1000);
    a.applyAll();
    b.hear(a); // b answers reset 1 ...
    expect(b.failNext()).to.equal('retry'); // ... but its engine could not connect
    expect(b.entry()).to.equal('', 'b says its ends are not connected');
    a.hear(b);
    expect(a.links.held(1)).to.equal(true);
    // b's retry: connecting to the same incarnation again is a reset of the link too.
    b.links.connect(0, 'aa', a.entry());
    expect(b.kinds().slice(1)).to.deep.equal(['hold']);
    b.applyAll();
    expect(b.entry()).to.equal('aa/1/1', 'its own reset 1, and a answered up to 1 (already)');
    a.hear(b); // a: answered, and b started reset 1 of its own: answer it, still releasing
    a.applyAll();
    b.hear(a);
    b.applyAll();
    expect(a.links.held(1)).to.equal(false);
    expect(b.links.held(0)).to.equal(false);
    expect([a.entry(), b.entry()]).to.deep.equal(['bb/1/1', 'aa/1/1']);
  });

  it('after a failed change to the same incarnation the counts go on, so an old answer cannot release a new reset', () => {
    const [a, b] = connectedPair();
    completeReset(a, b);
    completeReset(a, b);
    expect([a.entry(), b.entry()]).to.deep.equal(['bb/2/0', 'aa/0/2']);
    a.silentFor(100_000); // reset 3
    expect(a.kinds().at(-1)).to.equal('hold');
    expect(a.failNext()).to.equal('retry');
    a.links.connect(1, 'bb', b.entry()); // the retry: reset 4, held
    a.applyAll();
    expect(a.entry()).to.equal('bb/4/0');
    a.hear(b); // b still says answered 2
    expect(a.links.held(1)).to.equal(true, 'answered 2 does not release reset 4');
    b.hear(a);
    b.applyAll();
    a.hear(b);
    expect(a.links.held(1)).to.equal(false);
  });

  it('each engine change is matched by its number; a failure that a later change overtook changes nothing', () => {
    const [a] = connectedPair();
    a.silentFor(1000); // change 1: hold
    a.links.connect(1, 'cc', ''); // the peer restarted meanwhile: change 2, a fresh connection to cc
    expect(a.failNext()).to.equal('nothing', 'change 1 failed, but change 2 decides');
    expect(a.entry()).to.equal('bb/0/0');
    expect(a.applyAll()).to.deep.equal(['shown']);
    expect(a.entry()).to.equal('cc/0/0');
    expect(a.links.held(1)).to.equal(false);
    // The old incarnation's entries are ignored.
    a.links.onPeerEntry(1, 'bb', 'aa/5/0');
    expect(a.changes).to.have.length(2);
  });

  it('with resetAfterMs 0 it starts none, but still answers', () => {
    const quiet = new Side(0, 'aa', 0);
    const other = new Side(1, 'bb');
    quiet.links.connectedAtStart(1, 'bb');
    other.links.connectedAtStart(0, 'aa');
    quiet.silentFor(10_000_000);
    expect(quiet.kinds()).to.deep.equal([]);
    other.silentFor(1000);
    other.applyAll();
    quiet.hear(other);
    expect(quiet.kinds()).to.deep.equal(['reset']);
  });
});
