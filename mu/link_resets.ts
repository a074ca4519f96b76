// Paired resets of the links between live replicas. A link whose peer is alive (its
// control plane answers) but that this replica has not reached over the fabric for
// `resetAfterMs` is reset by both ends, in this order:
//   1. this replica resets its ends toward the peer and leaves them unconnected (held:
//      nothing goes out, nothing the peer sends lands), then tells the peer: its link
//      entry for the peer counts one more reset;
//   2. the peer sees a reset it has not answered, resets its own ends and connects them
//      (posting again at once: what it sends waits, or is retried, until ours connect),
//      and says so: its entry's `answered` catches up;
//   3. this replica sees its reset answered and connects its ends (the release).
// Neither end's stream moves between the first reset and the second, so both start from
// the packet sequence numbers their cards name: the link is in step whatever state the
// two ends were in. On RDMA nothing else brings back a pair of reliable-connection queue
// pairs that fell out of step (after a partition, a pause or an error on one side, each
// end cycling on its own is a lottery: scripts/rdma-vm/README.md). Resets that both ends
// start at once are fine: each answers the other's, and each releases once its own is
// answered. A held reset that gets no answer is started again (a lost message, a peer
// that reconnected meanwhile), and so is every connection to the same incarnation after
// a failed one: connecting one end afresh is a reset too.
//
// The entries travel in the cards' links (mu/control): `incarnation/resets/answered`,
// where incarnation is the peer's whose card the ends are connected to, resets counts
// those this replica started, and answered is the newest of the peer's it has answered.
// The engine carries out resets on its own thread, in order; each has a number, and an
// entry is shown to the peers only once the engine has carried out what it says.

export interface LinkEntry {
  incarnation: string;
  resets: number;
  answered: number;
}

export function formatLinkEntry(entry: LinkEntry): string {
  return `${entry.incarnation}/${entry.resets}/${entry.answered}`;
}

// The control plane checked the shape (mu/control/messages.ts); '' is "not connected".
export function parseLinkEntry(text: string): LinkEntry | undefined {
  if (text === '') return undefined;
  const [incarnation = '', resets = '0', answered = '0'] = text.split('/');
  return { incarnation, resets: Number(resets), answered: Number(answered) };
}

export interface LinkResetActions {
  // Reset this replica's ends toward `peer` and connect them to its current card, or,
  // with `hold`, leave them unconnected until release(); returns the engine's number for
  // the change (its 'peer-reconnected' event carries it).
  reset(peer: number, hold: boolean): number;
  release(peer: number): number;
  log(line: string): void;
}

interface Pending {
  change: number;
  entry: LinkEntry | undefined; // what is true once it is done (undefined: a release, no change)
}

interface PeerLink extends LinkEntry {
  connected: boolean; // false after a change failed: the ends are unconnected until the next
  shown: LinkEntry | undefined; // what the peer may be told (undefined: not connected)
  pending: Pending[]; // queued changes, oldest first
  held: boolean;
  heldSinceMs: number;
  silentSinceMs: number | undefined; // not reached over the fabric since, while connected
  waitMs: number; // before the next reset this replica starts (doubles while they do not help)
}

const maxWaitMs = 60_000;

export class LinkResets {
  private readonly links = new Map<number, PeerLink>();

  constructor(
    private readonly selfIncarnation: string,
    // 0: this replica starts no reset (it still answers the peers').
    private readonly resetAfterMs: number,
    private readonly actions: LinkResetActions,
    private readonly now: () => number = Date.now,
    // A held reset with no answer for this long is started again.
    private readonly holdTimeoutMs = Math.max(4 * resetAfterMs, 10_000),
  ) {}

  // The engine's ends toward `peer` were connected to its card of `incarnation` by
  // Replica.connect() at start-up (synchronously).
  connectedAtStart(peer: number, incarnation: string): void {
    const fresh = { incarnation, resets: 0, answered: 0 };
    this.links.set(peer, { ...fresh, connected: true, shown: fresh, pending: [], held: false, heldSinceMs: 0, silentSinceMs: undefined, waitMs: this.resetAfterMs });
  }

  // Connect the engine's ends toward `peer`, whose card of `incarnation` says `peerEntry`
  // about its link to this replica. A first connection to that incarnation starts from
  // nothing; one after a failed change is a reset of the link (held, counts go on).
  connect(peer: number, incarnation: string, peerEntry: string): void {
    const before = this.links.get(peer);
    if (before !== undefined && before.incarnation === incarnation) {
      before.connected = true;
      this.startReset(peer, before, 'connecting again after a failed attempt');
    } else {
      const fresh = { incarnation, resets: 0, answered: 0 };
      const link: PeerLink = { ...fresh, connected: true, shown: before?.shown, pending: before?.pending ?? [], held: false, heldSinceMs: 0, silentSinceMs: undefined, waitMs: this.resetAfterMs };
      this.links.set(peer, link);
      link.pending.push({ change: this.actions.reset(peer, false), entry: { ...fresh } });
    }
    // The peer may have started resets of its own toward this replica meanwhile.
    this.onPeerEntry(peer, incarnation, peerEntry);
  }

  // The engine carried out change `change` toward `peer` (or failed to). Returns 'retry'
  // when the link is left unconnected by the newest change (connect it again later),
  // 'shown' when what the peer may be told changed, else 'nothing'.
  applied(peer: number, change: number, ok: boolean): 'retry' | 'shown' | 'nothing' {
    const link = this.links.get(peer);
    if (link === undefined) return 'nothing';
    const at = link.pending.findIndex((pending) => pending.change === change);
    if (at < 0) return 'nothing';
    const done = link.pending.splice(0, at + 1);
    const newest = link.pending.length === 0;
    if (!ok) {
      if (!newest) return 'nothing'; // a later change decides
      link.connected = false;
      link.held = false;
      link.shown = undefined;
      return 'retry';
    }
    const entry = done.at(-1)?.entry;
    if (entry === undefined) return 'nothing';
    link.shown = entry;
    return 'shown';
  }

  // For status reports: per peer, what this replica's card says of the link, whether it
  // is held, and how many resets each side started (this incarnation pair).
  report(peer: number): { link: string; held: boolean; resetsStarted: number; resetsAnswered: number } {
    const link = this.links.get(peer);
    return { link: this.entryFor(peer), held: link?.held ?? false, resetsStarted: link?.resets ?? 0, resetsAnswered: link?.answered ?? 0 };
  }

  // Whether the engine's ends toward `peer` are (being) connected to `incarnation`.
  connectedTo(peer: number, incarnation: string): boolean {
    const link = this.links.get(peer);
    return link !== undefined && link.connected && link.incarnation === incarnation;
  }

  held(peer: number): boolean {
    return this.links.get(peer)?.held ?? false;
  }

  // What this replica's card says about its link to `peer`.
  entryFor(peer: number): string {
    const shown = this.links.get(peer)?.shown;
    return shown === undefined ? '' : formatLinkEntry(shown);
  }

  // `peer` (of `incarnation`) sent what its link to this replica is: answer a reset it
  // started, release one of ours it answered.
  onPeerEntry(peer: number, incarnation: string, text: string): void {
    const link = this.links.get(peer);
    const theirs = parseLinkEntry(text);
    if (link === undefined || !link.connected || link.incarnation !== incarnation || theirs?.incarnation !== this.selfIncarnation) return;
    if (theirs.resets > link.answered) {
      link.answered = theirs.resets;
      this.actions.log(`replica ${peer} reset its link to this one (reset ${theirs.resets}): resetting this end too`);
      this.queueReset(peer, link);
    }
    if (link.held && theirs.answered >= link.resets) {
      link.held = false;
      link.silentSinceMs = undefined;
      this.actions.log(`replica ${peer} reset its end of the link too (reset ${link.resets}): connecting this end again`);
      link.pending.push({ change: this.actions.release(peer), entry: undefined });
    }
  }

  // Called now and then: `alive` whether the engine reaches `peer` over the fabric,
  // `reachable` whether its control plane answers.
  check(peer: number, alive: boolean, reachable: boolean): void {
    const nowMs = this.now();
    const link = this.links.get(peer);
    if (link === undefined || !link.connected) return;
    if (link.held) {
      if (reachable && nowMs - link.heldSinceMs >= this.holdTimeoutMs) {
        this.startReset(peer, link, `no answer for ${nowMs - link.heldSinceMs} ms`);
      }
      return;
    }
    if (alive) {
      link.silentSinceMs = undefined;
      link.waitMs = this.resetAfterMs;
      return;
    }
    link.silentSinceMs ??= nowMs;
    if (this.resetAfterMs <= 0 || !reachable || nowMs - link.silentSinceMs < link.waitMs) return;
    this.startReset(peer, link, `not reached over the fabric for ${link.waitMs} ms while its control plane answers`);
    link.waitMs = Math.min(link.waitMs * 2, maxWaitMs);
  }

  private startReset(peer: number, link: PeerLink, why: string): void {
    link.resets += 1;
    link.held = true;
    link.heldSinceMs = this.now();
    link.silentSinceMs = undefined;
    this.actions.log(`replica ${peer}: ${why}: resetting the link (reset ${link.resets}), this end unconnected until it resets its own`);
    this.queueReset(peer, link);
  }

  private queueReset(peer: number, link: PeerLink): void {
    const entry = { incarnation: link.incarnation, resets: link.resets, answered: link.answered };
    link.pending.push({ change: this.actions.reset(peer, link.held), entry });
  }
}
