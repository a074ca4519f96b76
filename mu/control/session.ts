// One TCP connection between two replicas, from either end: the mutual handshake, then sealed
// card messages. Any deviation refuses the connection (reported once, then the socket is
// destroyed); the session never throws into its caller.
import type net from 'node:net';

import {
  type ChannelCiphers,
  type HandshakeTranscript,
  computeHandshakeMac,
  createNonce,
  deriveChannelCiphers,
  verifyHandshakeMac,
} from './auth.js';
import type { PeerCard } from './card_book.js';
import { FrameDecoder, FrameError, type FrameMessage, encodeFrame } from './frame.js';
import { type CardMessage, type ControlMessage, ProtocolError, cardAssociatedData, parseMessage } from './messages.js';

export interface SessionContext {
  selfId: number;
  clusterName: string;
  secret: Buffer;
  handshakeTimeoutMs: number;
  /** Read at send time, so a later card change would go out on new connections. */
  ownCard(): { incarnation: string; card: Buffer; links: readonly string[] };
  /** A replica id of this cluster other than ours. */
  isPeer(id: number): boolean;
  replicaCount: number;
  pingIntervalMs: number;
  silenceTimeoutMs: number;
  log(line: string): void;
}

export interface SessionHooks {
  authenticated(session: PeerSession): void;
  card(session: PeerSession, card: PeerCard): void;
  refused(session: PeerSession, reason: string): void;
  closed(session: PeerSession): void;
}

type SessionState =
  | 'awaiting-challenge' // dialer
  | 'awaiting-auth' // listener
  | 'awaiting-welcome' // dialer
  | 'awaiting-card' // both: authenticated, the peer's card not yet received
  | 'open';

export type SessionRole = 'listener' | 'dialer';

export class PeerSession {
  /** The peer's replica id once it has proven the secret; undefined before. */
  peerId: number | undefined;
  readonly remote: string;
  private state: SessionState;
  private ownCardSent = false;
  private finished = false;
  private readonly decoder = new FrameDecoder();
  private readonly ownNonce = createNonce();
  private transcript: HandshakeTranscript | undefined;
  private ciphers: ChannelCiphers | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private lastHeardMs = Date.now();

  private constructor(
    readonly role: SessionRole,
    private readonly socket: net.Socket,
    private readonly context: SessionContext,
    private readonly hooks: SessionHooks,
    /** Dialer only: the replica we meant to reach. */
    private readonly expectedPeerId: number | undefined,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.state = role === 'listener' ? 'awaiting-auth' : 'awaiting-challenge';
    // The whole handshake, card exchange included, must finish in time: a silent or slow
    // connection would otherwise hold a slot of the unauthenticated-connection cap forever.
    this.handshakeTimer = setTimeout(
      () => this.refuse(`handshake timed out after ${context.handshakeTimeoutMs} ms (${this.state})`),
      context.handshakeTimeoutMs,
    );
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    // 'close' always follows 'error'; the reason is not needed beyond the close itself.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.finish();
      this.hooks.closed(this);
    });
  }

  /** An accepted connection: challenge the dialer at once. */
  static accept(socket: net.Socket, context: SessionContext, hooks: SessionHooks): PeerSession {
    const session = new PeerSession('listener', socket, context, hooks, undefined);
    session.send({ type: 'challenge', cluster: context.clusterName, listener_id: context.selfId, nonce: session.ownNonce });
    return session;
  }

  /** A connected outgoing socket to replica `peerId`: wait for its challenge. */
  static dial(socket: net.Socket, context: SessionContext, hooks: SessionHooks, peerId: number): PeerSession {
    return new PeerSession('dialer', socket, context, hooks, peerId);
  }

  /** Reports the reason once (hooks.refused) and drops the connection. */
  refuse(reason: string): void {
    if (this.finished) return;
    this.finish();
    this.hooks.refused(this, reason);
    this.socket.destroy();
  }

  /** Drops the connection without blaming the peer (shutdown, a newer connection replaced it). */
  close(): void {
    this.finish();
    this.socket.destroy();
  }

  private finish(): void {
    this.finished = true;
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  /** Open (cards exchanged) and heard from within the silence timeout. */
  get live(): boolean {
    return this.state === 'open' && !this.finished && Date.now() - this.lastHeardMs < this.context.silenceTimeoutMs;
  }

  // From authentication on: a ping every interval, and an open connection silent for the
  // timeout is closed (its dialer redials), so a peer cut off stops counting as reachable
  // within seconds rather than when TCP gives up.
  private startPinging(): void {
    this.pingTimer = setInterval(() => {
      const silentMs = Date.now() - this.lastHeardMs;
      if (this.state === 'open' && silentMs >= this.context.silenceTimeoutMs) {
        this.context.log(`replica ${this.peerId ?? '?'} silent for ${silentMs} ms on ${this.remote}: closing the connection`);
        this.close();
        return;
      }
      this.send({ type: 'ping' });
    }, this.context.pingIntervalMs);
    this.pingTimer.unref();
  }

  private send(message: ControlMessage): void {
    if (!this.finished) this.socket.write(encodeFrame(message));
  }

  private receive(chunk: Buffer): void {
    if (this.finished) return;
    this.lastHeardMs = Date.now();
    let frames: FrameMessage[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.refuse(`malformed frame: ${error instanceof FrameError ? error.message : String(error)}`);
      return;
    }
    for (const frame of frames) {
      if (this.finished) return;
      let message: ControlMessage;
      try {
        message = parseMessage(frame);
      } catch (error) {
        this.refuse(`malformed message: ${error instanceof ProtocolError ? error.message : String(error)}`);
        return;
      }
      this.handle(message);
    }
  }

  private handle(message: ControlMessage): void {
    const unexpected = (): void => this.refuse(`unexpected ${message.type} message while ${this.state}`);
    switch (this.state) {
      case 'awaiting-auth':
        return message.type === 'auth' ? this.onAuth(message) : unexpected();
      case 'awaiting-challenge':
        return message.type === 'challenge' ? this.onChallenge(message) : unexpected();
      case 'awaiting-welcome':
        return message.type === 'welcome' ? this.onWelcome(message) : unexpected();
      case 'awaiting-card':
      case 'open':
        if (message.type === 'ping') return;
        return message.type === 'card' ? this.onCard(message) : unexpected();
    }
  }

  // Listener: the dialer proves the secret over our nonce and its own.
  private onAuth(message: Extract<ControlMessage, { type: 'auth' }>): void {
    const { selfId, clusterName, secret } = this.context;
    if (message.cluster !== clusterName) return this.refuse(`wrong cluster "${message.cluster}"`);
    if (!this.context.isPeer(message.dialer_id)) return this.refuse(`unknown replica id ${message.dialer_id}`);
    const transcript: HandshakeTranscript = {
      cluster: clusterName,
      listenerNonce: this.ownNonce,
      dialerNonce: message.nonce,
      dialerId: message.dialer_id,
      listenerId: selfId,
    };
    if (!verifyHandshakeMac(secret, 'dialer', transcript, message.mac)) {
      return this.refuse(`authentication failed (claimed replica ${message.dialer_id})`);
    }
    this.authenticate(message.dialer_id, transcript);
    this.send({ type: 'welcome', mac: computeHandshakeMac(secret, 'listener', transcript).toString('hex') });
  }

  // Dialer: answer the challenge, but reveal nothing beyond a MAC until the listener proves itself.
  private onChallenge(message: Extract<ControlMessage, { type: 'challenge' }>): void {
    const { selfId, clusterName, secret } = this.context;
    if (message.cluster !== clusterName) return this.refuse(`listener belongs to cluster "${message.cluster}"`);
    if (message.listener_id !== this.expectedPeerId) {
      return this.refuse(`expected replica ${this.expectedPeerId}, reached replica ${message.listener_id}`);
    }
    this.transcript = {
      cluster: clusterName,
      listenerNonce: message.nonce,
      dialerNonce: this.ownNonce,
      dialerId: selfId,
      listenerId: message.listener_id,
    };
    this.state = 'awaiting-welcome';
    this.send({
      type: 'auth',
      cluster: clusterName,
      dialer_id: selfId,
      nonce: this.ownNonce,
      mac: computeHandshakeMac(secret, 'dialer', this.transcript).toString('hex'),
    });
  }

  private onWelcome(message: Extract<ControlMessage, { type: 'welcome' }>): void {
    const transcript = this.transcript;
    if (transcript === undefined || !verifyHandshakeMac(this.context.secret, 'listener', transcript, message.mac)) {
      return this.refuse(`listener failed to prove the cluster secret (claimed replica ${this.expectedPeerId})`);
    }
    this.authenticate(transcript.listenerId, transcript);
    this.sendOwnCard();
  }

  private authenticate(peerId: number, transcript: HandshakeTranscript): void {
    this.peerId = peerId;
    this.transcript = transcript;
    this.ciphers = deriveChannelCiphers(this.context.secret, this.role, transcript);
    this.state = 'awaiting-card';
    this.startPinging();
    this.hooks.authenticated(this);
  }

  // This replica's links changed: a peer that has its card gets it again, with them. (A
  // session that has not sent its card yet sends the current links when it does.)
  resendOwnCard(): void {
    if (this.ownCardSent) this.sendOwnCard();
  }

  private sendOwnCard(): void {
    if (this.ciphers === undefined) return;
    this.ownCardSent = true;
    const { incarnation, card, links } = this.context.ownCard();
    const sealed = this.ciphers.send.seal(cardAssociatedData(this.context.selfId, incarnation, links), card);
    this.send({ type: 'card', id: this.context.selfId, incarnation, links: [...links], card: sealed.toString('base64') });
  }

  private onCard(message: CardMessage): void {
    // A peer speaks only for itself: its card must carry the id it authenticated as.
    if (message.id !== this.peerId) return this.refuse(`replica ${this.peerId} sent a card for replica ${message.id}`);
    const sealed = Buffer.from(message.card, 'base64');
    const opened = this.ciphers?.receive.open(cardAssociatedData(message.id, message.incarnation, message.links), sealed);
    if (opened === undefined) return this.refuse(`card from replica ${this.peerId} failed to open (altered or replayed)`);
    if (this.state === 'awaiting-card') {
      this.state = 'open';
      if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      // The listener answers the dialer's card with its own: the dialer fetches it this way.
      if (this.role === 'listener') this.sendOwnCard();
    }
    if (message.links.length !== this.context.replicaCount) {
      return this.refuse(`card from replica ${this.peerId} has ${message.links.length} links, not one per replica`);
    }
    this.hooks.card(this, { id: message.id, incarnation: message.incarnation, card: opened, links: message.links });
  }
}
