// Pub/sub is not replicated: a message is not state, and Redis' own replicas do not
// deliver it to their subscribers either. It is served by the leader's redis-server. A
// client that subscribes there gets a connection of its own to that server (a
// subscribed connection receives pushes at any time, so it cannot share the apply
// stream's channel); this relay forwards the client's subscription commands to it and
// the server's frames back.
//
// The session must know, in order, when the server left the subscribed state (after the
// last UNSUBSCRIBE, a client may send any command again, and that one must not run on
// this unreplicated connection). So every forwarded command is followed by a PING with a
// marker of this relay's own: when its answer comes back, everything forwarded before it
// has been answered, and `subscribed` is exact. The markers' answers are not passed on.
import crypto from 'node:crypto';
import net from 'node:net';

import { connectOptionsOf, type Endpoint } from '../../adapters/endpoint.js';
import { encodeCommand, ReplyFramer } from '../../adapters/redis/resp.js';
import { HeldFrames } from './held_frames.js';

const subscriptionKinds = new Map<string, 'regular' | 'shard'>([
  ['subscribe', 'regular'],
  ['unsubscribe', 'regular'],
  ['psubscribe', 'regular'],
  ['punsubscribe', 'regular'],
  ['ssubscribe', 'shard'],
  ['sunsubscribe', 'shard'],
]);

export interface SubscriberRelayOptions {
  backend: Endpoint;
  // Frames held while the client's earlier replies are still owed (see `startWriting`),
  // at most this many bytes; beyond, the relay fails.
  maxHeldBytes: number;
  deliver: (frame: Buffer) => void;
  failed: (reason: string) => void;
}

export class SubscriberRelay {
  private readonly socket: net.Socket;
  private readonly framer = new ReplyFramer();
  private readonly marker = Buffer.from(`mu-proxy-relay-marker-${crypto.randomBytes(12).toString('hex')}`);
  private readonly markerPing = encodeCommand(['PING', this.marker]);
  private markersInFlight = 0;
  private quietWaiters: Array<() => void> = [];
  private readonly frames: HeldFrames;
  private closed = false;
  // As the server last reported them: channels plus patterns, and shard channels.
  private regularCount = 0;
  private shardCount = 0;

  constructor(private readonly options: SubscriberRelayOptions) {
    this.frames = new HeldFrames(options.deliver, options.maxHeldBytes);
    this.socket = net.connect(connectOptionsOf(options.backend));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error: Error) => this.fail(`the subscription connection to the backend failed: ${error.message}`));
    this.socket.on('close', () => this.fail('the backend closed the subscription connection'));
  }

  // Whether the server holds the connection in the subscribed state. Exact only when
  // `quiet`.
  get subscribed(): boolean {
    return this.regularCount + this.shardCount > 0;
  }

  get quiet(): boolean {
    return this.markersInFlight === 0;
  }

  forward(argv: ReadonlyArray<Buffer>): void {
    this.socket.write(encodeCommand(argv));
    this.socket.write(this.markerPing);
    this.markersInFlight++;
  }

  // Runs `then` once everything forwarded so far has been answered.
  whenQuiet(then: () => void): void {
    if (this.quiet) then();
    else this.quietWaiters.push(then);
  }

  // The client's replies before the first SUBSCRIBE have all been written: from now on the
  // frames go straight to the client.
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
      this.fail(`the backend sent malformed bytes on the subscription connection: ${(error as Error).message}`);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      if (this.isMarkerAnswer(frame)) {
        this.markersInFlight--;
        if (this.markersInFlight === 0) {
          const waiters = this.quietWaiters;
          this.quietWaiters = [];
          for (const then of waiters) then();
        }
        continue;
      }
      this.noteCount(frame);
      this.pass(frame);
    }
  }

  // A reply of the session's own (a command refused in the subscribed context): in order
  // with the server's frames, so held as they are while earlier replies are owed.
  inject(frame: Buffer): void {
    if (!this.closed) this.pass(frame);
  }

  private pass(frame: Buffer): void {
    if (!this.frames.push(frame)) this.fail('too many messages held for a client that has not read its earlier replies');
  }

  // PING <marker> answers `*2 pong <marker>` while subscribed and `$n <marker>` when not.
  private isMarkerAnswer(frame: Buffer): boolean {
    if (frame.length < this.marker.length + 2) return false;
    const tail = frame.subarray(frame.length - this.marker.length - 2);
    if (!tail.subarray(0, this.marker.length).equals(this.marker)) return false;
    const bulk = Buffer.from(`$${this.marker.length}\r\n`);
    const pong = Buffer.concat([Buffer.from('*2\r\n$4\r\npong\r\n'), bulk]);
    const head = frame.subarray(0, frame.length - this.marker.length - 2);
    return head.equals(bulk) || head.equals(pong);
  }

  // An (un)subscribe confirmation: `*3 $kind $channel-or-nil :count`; count is the total
  // after it (for the shard kinds, of shard channels only).
  private noteCount(frame: Buffer): void {
    if (frame.subarray(0, 5).toString('latin1') !== '*3\r\n$') return;
    const lengthEnd = frame.indexOf('\r\n', 5);
    const kindLength = Number(frame.toString('latin1', 5, lengthEnd));
    const kind = subscriptionKinds.get(frame.toString('latin1', lengthEnd + 2, lengthEnd + 2 + kindLength));
    if (kind === undefined) return;
    const countStart = frame.lastIndexOf(':');
    const count = Number(frame.toString('latin1', countStart + 1, frame.length - 2));
    if (kind === 'regular') this.regularCount = count;
    else this.shardCount = count;
  }

  private fail(reason: string): void {
    if (this.closed) return;
    this.close();
    this.options.failed(reason);
  }
}
