// One client connection's replies, in request order, for both front ends' sessions (Redis
// and memcached): each request reserves its place as it arrives, and a reply that is ready
// before the ones ahead of it waits for them.
export interface ReplySlot {
  data: Buffer | undefined;
  // A stream of frames holding this place (a subscription, the link to the leader): later
  // replies wait behind it; it is told to start once the replies before it are out.
  relay?: { startWriting(): void };
}

export class OrderedReplies {
  private readonly slots: ReplySlot[] = [];

  // Places reserved and not written yet.
  get length(): number {
    return this.slots.length;
  }

  reserve(): ReplySlot {
    const slot: ReplySlot = { data: undefined };
    this.slots.push(slot);
    return slot;
  }

  // Gives `slot`'s place to a stream of frames: it starts at once when nothing is owed
  // before it.
  hold(slot: ReplySlot, relay: { startWriting(): void }): void {
    slot.relay = relay;
    if (this.slots[0] === slot) relay.startWriting();
  }

  // Fills `slot`. When it is first in line, hands `write` every reply now ready at the
  // front, in order, then starts the relay that comes next, if any. False when nothing
  // was written (an earlier reply is still owed, or the slot was filled already).
  fill(slot: ReplySlot, data: Buffer, write: (ready: Buffer[]) => void): boolean {
    if (slot.data !== undefined) return false;
    slot.data = data;
    if (this.slots[0] !== slot) return false;
    let ready = 0;
    while (ready < this.slots.length && this.slots[ready]?.data !== undefined) ready++;
    write(this.slots.splice(0, ready).map((done) => done.data as Buffer));
    this.slots[0]?.relay?.startWriting();
    return true;
  }
}
