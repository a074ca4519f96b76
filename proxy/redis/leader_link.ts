// A follower's client, relayed to the leader. Only the leader proposes, so a follower
// that gets a write (or a linearizable read, a transaction, a blocking pop, a
// subscription) hands the rest of that client's connection to the leader's own proxy
// port: one link per client, opened with the client's state (AUTH with the cluster's
// password, `MU FORWARDED` so the leader never forwards it again, its database, its name),
// and from then on every request goes up as it came and every reply comes back as the
// leader sent it, pushes included. The replies to the set-up commands are checked and
// dropped.
import net from 'node:net';

import { encodeCommand, ReplyFramer } from '../../adapters/redis/resp.js';
import { HeldFrames } from './held_frames.js';

export interface LeaderLinkOptions {
  host: string;
  port: number;
  setup: Buffer[]; // encoded commands, each answered with one reply that must not be an error
  // Replies held while the client's earlier replies are still owed, at most this many
  // bytes; beyond, the link fails.
  maxHeldBytes: number;
  deliver: (frame: Buffer) => void;
  // The link ended: the leader closed it (after QUIT, or going away), refused the set-up,
  // or the connection failed. Called once, never after close().
  ended: (reason: string) => void;
}

export class LeaderLink {
  private readonly socket: net.Socket;
  private readonly framer = new ReplyFramer();
  private setupRemaining: number;
  private readonly frames: HeldFrames;
  private closed = false;

  constructor(private readonly options: LeaderLinkOptions) {
    this.frames = new HeldFrames(options.deliver, options.maxHeldBytes);
    this.setupRemaining = options.setup.length;
    this.socket = net.connect(options.port, options.host);
    this.socket.setNoDelay(true);
    for (const command of options.setup) this.socket.write(command);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error: Error) => this.end(`the link to the leader failed: ${error.message}`));
    this.socket.on('close', () => this.end('the leader closed the link'));
  }

  // Sends one request up. False when the link's send buffer is full: the caller stops
  // reading its client until `whenDrained`.
  forward(argv: ReadonlyArray<Buffer>): boolean {
    return this.socket.write(encodeCommand(argv));
  }

  whenDrained(then: () => void): void {
    this.socket.once('drain', then);
  }

  // The client's replies before the link have all been written: from now on the leader's
  // go straight to the client.
  startWriting(): void {
    this.frames.startWriting();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.framer.push(chunk);
    } catch (error) {
      this.end(`the leader sent malformed bytes: ${(error as Error).message}`);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      if (this.setupRemaining > 0) {
        this.setupRemaining--;
        if (frame[0] === 0x2d /* - */) {
          this.end(`the leader refused the link: ${frame.toString('latin1', 1, frame.length - 2)}`);
          return;
        }
        continue;
      }
      if (!this.frames.push(frame)) this.end('too many replies held for a client that has not read its earlier ones');
    }
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.close();
    this.options.ended(reason);
  }
}
