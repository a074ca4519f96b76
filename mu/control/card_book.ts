// What this replica knows of every replica's card. A replica's card is fixed for one
// incarnation, so a new incarnation means a restart, and a different card under the same
// incarnation is a protocol violation (or two processes claiming one id) rather than news.

export interface PeerCard {
  id: number;
  incarnation: string;
  card: Buffer;
  // links[i]: the incarnation of replica i that this replica's connection ends toward i are
  // connected to, '' for none (messages.ts CardMessage); the newest the replica sent.
  links: readonly string[];
}

/**
 * learned: first card of that replica; restarted: a new incarnation replaced the old one;
 * relinked: the same card, with links that changed.
 */
export type CardUpdate =
  | { kind: 'learned' }
  | { kind: 'restarted'; previousIncarnation: string }
  | { kind: 'relinked' }
  | { kind: 'unchanged' }
  | { kind: 'conflict' };

export class CardBook {
  private readonly known = new Map<number, PeerCard>();

  constructor(private readonly replicaCount: number, self: PeerCard) {
    this.known.set(self.id, self);
  }

  record(card: PeerCard): CardUpdate {
    const previous = this.known.get(card.id);
    if (previous !== undefined && previous.incarnation === card.incarnation) {
      if (!previous.card.equals(card.card)) return { kind: 'conflict' };
      if (sameLinks(previous.links, card.links)) return { kind: 'unchanged' };
      this.known.set(card.id, card);
      return { kind: 'relinked' };
    }
    this.known.set(card.id, card);
    return previous === undefined ? { kind: 'learned' } : { kind: 'restarted', previousIncarnation: previous.incarnation };
  }

  /** This replica's own links changed (its card stays). */
  relinkSelf(id: number, links: readonly string[]): void {
    const own = this.known.get(id);
    if (own !== undefined) this.known.set(id, { ...own, links });
  }

  snapshot(): Map<number, PeerCard> {
    return new Map(this.known);
  }

  missing(): number[] {
    const ids: number[] = [];
    for (let id = 0; id < this.replicaCount; id += 1) if (!this.known.has(id)) ids.push(id);
    return ids;
  }

  /** Every replica's card in id order, or undefined while one is missing. */
  complete(): PeerCard[] | undefined {
    const cards: PeerCard[] = [];
    for (let id = 0; id < this.replicaCount; id += 1) {
      const card = this.known.get(id);
      if (card === undefined) return undefined;
      cards.push(card);
    }
    return cards;
  }
}

function sameLinks(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((entry, i) => entry === b[i]);
}
