// A follower's memcached client, relayed to the leader (as proxy/redis/leader_link.ts does
// for Redis): memcached clients spread their keys over every server they are given, so a
// follower gets writes, and only the leader proposes. The link opens with
// `mu_forwarded <origin> <user> <time> <token>` (a token of the cluster secret, so the
// leader never forwards the connection again), answered OK; from then on the client's
// requests go up and the leader's replies come back as they are: no reply framing is
// needed, the leader's front end answers every request in order.
import net from 'node:net';

import { HeldFrames } from '../redis/held_frames.js';

export interface MemcachedLeaderLinkOptions {
  host: string;
  port: number;
  greeting: Buffer;
  maxHeldBytes: number;
  deliver: (bytes: Buffer) => void;
  ended: (reason: string) => void;
}

export class MemcachedLeaderLink {
  private readonly socket: net.Socket;
  private readonly frames: HeldFrames;
  private greeting: Buffer | undefined = Buffer.alloc(0); // the greeting's answer so far; undefined once read
  private closed = false;

  constructor(private readonly options: MemcachedLeaderLinkOptions) {
    this.frames = new HeldFrames(options.deliver, options.maxHeldBytes);
    this.socket = net.connect(options.port, options.host);
    this.socket.setNoDelay(true);
    this.socket.write(options.greeting);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error: Error) => this.end(`the link to the leader failed: ${error.message}`));
    this.socket.on('close', () => this.end('the leader closed the link'));
  }

  // False when the link's send buffer is full: stop reading the client until whenDrained.
  forward(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  whenDrained(then: () => void): void {
    this.socket.once('drain', then);
  }

  startWriting(): void {
    this.frames.startWriting();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let bytes = chunk;
    if (this.greeting !== undefined) {
      const seen = Buffer.concat([this.greeting, chunk]);
      const lineEnd = seen.indexOf('\n');
      if (lineEnd < 0) {
        this.greeting = seen;
        if (seen.length > 1024) this.end('the leader answered the greeting with something else');
        return;
      }
      const answer = seen.toString('latin1', 0, lineEnd).replace(/\r$/, '');
      this.greeting = undefined;
      if (answer !== 'OK') {
        this.end(`the leader refused the link: ${answer}`);
        return;
      }
      bytes = seen.subarray(lineEnd + 1);
      if (bytes.length === 0) return;
    }
    if (!this.frames.push(bytes)) this.end('too many replies held for a client that has not read its earlier ones');
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.close();
    this.options.ended(reason);
  }
}
