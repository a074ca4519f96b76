// A stream of frames for a client (a subscription's, or the leader's replies through a
// link) that may not reach it yet: the client's earlier replies are still owed. Frames are
// held, up to a limit, until startWriting; from then on they go straight through.
export class HeldFrames {
  private held: Buffer[] | undefined = [];
  private heldBytes = 0;

  constructor(
    private readonly deliver: (frame: Buffer) => void,
    private readonly maxHeldBytes: number,
  ) {}

  // False when holding it passes the limit: the caller ends the stream (a client that
  // does not read its earlier replies cannot grow the proxy's memory).
  push(frame: Buffer): boolean {
    if (this.held === undefined) {
      this.deliver(frame);
      return true;
    }
    this.held.push(frame);
    this.heldBytes += frame.length;
    return this.heldBytes <= this.maxHeldBytes;
  }

  startWriting(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const frame of held) this.deliver(frame);
  }
}
