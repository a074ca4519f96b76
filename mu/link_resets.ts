// Paired resets of the links between live replicas. A link whose peer is alive (its
// control plane answers) but that this replica has not reached over the fabric for
// `resetAfterMs` is reset by both ends, in this order:
//   1. this replica resets its ends toward the peer, connects them again and holds them
//      (they refuse posts: native/engine/holdable_connection.hpp), then tells the peer:
//      its link entry for the peer counts one more reset;
//   2. the peer sees a reset it has not answered, resets its own ends (posting again at
//      once: ours are fresh and quiet), and says so: its entry's `answered` catches up;
//   3. this replica sees its reset answered and releases its ends.
// Both ends then start from the packet sequence numbers their cards name, and neither
// posted between its reset and the other's: the link is in step whatever state the two
// ends were in. On RDMA nothing else brings back a reliable-connection queue pair pair
// that fell out of step (after a partition, a pause or an error on one side, each end
// cycling on its own is a lottery: scripts/rdma-vm/README.md). Resets that both ends start
// at once are fine: each answers the other's, and each releases once its own is answered.
//
// The entries travel in the cards' links (mu/control): `incarnation/resets/answered`,
// where incarnation is the peer's whose card the ends are connected to, resets counts
// those this replica started, and answered is the newest of the peer's it has answered.

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
  // Reset this replica's ends toward `peer` and connect them again to its current card,
  // holding them or not; the owner announces the links once that is done.
  reset(peer: number, hold: boolean): void;
  release(peer: number): void;
  log(line: string): void;
}

interface PeerLink extends LinkEntry {
  // What the peer may be told: the counts as of the last reset the engine has carried out.
  // A reset is queued to the engine thread; telling the peer before it is done would let
  // the peer post toward ends that are about to be reset.
  shown: LinkEntry | undefined; // undefined: not connected
  pending: LinkEntry[]; // the counts each queued reset will make true, oldest first
  held: boolean;
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
  ) {}

  // The engine's ends toward `peer` are being connected afresh to its card of
  // `incarnation` (queued: applied() says when it is done; until then the peer is told
  // what was true before).
  connecting(peer: number, incarnation: string): void {
    const fresh = { incarnation, resets: 0, answered: 0 };
    const before = this.links.get(peer);
    const pending = [...(before?.pending ?? []), fresh];
    this.links.set(peer, { ...fresh, shown: before?.shown, pending, held: false, silentSinceMs: undefined, waitMs: this.resetAfterMs });
  }

  // The engine carried out the oldest reset queued toward `peer` (its 'peer-reconnected').
  applied(peer: number): void {
    const link = this.links.get(peer);
    const done = link?.pending.shift();
    if (link !== undefined && done !== undefined) link.shown = done;
  }

  disconnected(peer: number): void {
    this.links.delete(peer);
  }

  incarnationOf(peer: number): string | undefined {
    return this.links.get(peer)?.incarnation;
  }

  held(peer: number): boolean {
    return this.links.get(peer)?.held ?? false;
  }

  // What this replica's card says about its link to `peer`.
  entryFor(peer: number): string {
    const link = this.links.get(peer);
    return link?.shown === undefined ? '' : formatLinkEntry(link.shown);
  }

  private reset(peer: number, link: PeerLink): void {
    link.pending.push({ incarnation: link.incarnation, resets: link.resets, answered: link.answered });
    this.actions.reset(peer, link.held);
  }

  // `peer` (of `incarnation`) sent what its link to this replica is: answer a reset it
  // started, release one of ours it answered.
  onPeerEntry(peer: number, incarnation: string, text: string): void {
    const link = this.links.get(peer);
    const theirs = parseLinkEntry(text);
    if (link === undefined || link.incarnation !== incarnation || theirs?.incarnation !== this.selfIncarnation) return;
    if (theirs.resets > link.answered) {
      link.answered = theirs.resets;
      this.actions.log(`replica ${peer} reset its link to this one (reset ${theirs.resets}): resetting this end too`);
      this.reset(peer, link);
    }
    if (link.held && theirs.answered >= link.resets) {
      link.held = false;
      link.silentSinceMs = undefined;
      this.actions.log(`replica ${peer} reset its end of the link too (reset ${link.resets}): posting to it again`);
      this.actions.release(peer);
    }
  }

  // Called now and then: `alive` whether the engine reaches `peer` over the fabric,
  // `reachable` whether its control plane answers.
  check(peer: number, alive: boolean, reachable: boolean, nowMs: number): void {
    const link = this.links.get(peer);
    if (link === undefined || link.held) return;
    if (alive) {
      link.silentSinceMs = undefined;
      link.waitMs = this.resetAfterMs;
      return;
    }
    link.silentSinceMs ??= nowMs;
    if (this.resetAfterMs <= 0 || !reachable || nowMs - link.silentSinceMs < link.waitMs) return;
    link.resets += 1;
    link.held = true;
    link.silentSinceMs = undefined;
    this.actions.log(
      `not reached replica ${peer} over the fabric for ${link.waitMs} ms while its control plane answers: resetting the link (reset ${link.resets}), holding this end until it resets its own`,
    );
    link.waitMs = Math.min(link.waitMs * 2, maxWaitMs);
    this.reset(peer, link);
  }
}
