// What this replica knows of every replica's card. A replica's card is fixed for one
// incarnation, so a new incarnation means a restart, and a different card under the same
// incarnation is a protocol violation (or two processes claiming one id) rather than news.

export interface PeerCard {
  id: number;
  incarnation: string;
  card: Buffer;
}

/** learned: first card of that replica; restarted: a new incarnation replaced the old one. */
export type CardUpdate =
  | { kind: 'learned' }
  | { kind: 'restarted'; previousIncarnation: string }
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
      return previous.card.equals(card.card) ? { kind: 'unchanged' } : { kind: 'conflict' };
    }
    this.known.set(card.id, card);
    return previous === undefined ? { kind: 'learned' } : { kind: 'restarted', previousIncarnation: previous.incarnation };
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
