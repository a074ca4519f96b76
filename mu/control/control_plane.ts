// The control plane of one replica: listens for its peers, dials each of them, and keeps the
// card of every replica (ours included) current. See README.md for the protocol.
import { EventEmitter } from 'node:events';
import net from 'node:net';

import { CardBook, type PeerCard } from './card_book.js';
import { isLinkEntry } from './messages.js';
import { Dialer } from './dialer.js';
import { type ControlPlaneOptions, type PeerAddress, type ResolvedOptions, resolveOptions } from './options.js';
import { PeerSession, type SessionContext, type SessionHooks } from './session.js';

export type { ControlPlaneOptions, PeerAddress } from './options.js';
export type { PeerCard } from './card_book.js';

export type ControlPlaneEvents = {
  /**
   * A replica's card was learned for the first time, its incarnation changed (restart), or
   * its links changed (it connected to, or dropped, another replica's incarnation).
   */
  card: [card: PeerCard];
  /** An incoming connection or a message was refused; the connection is closed. */
  refused: [reason: string, remote: string];
};

export interface ControlPlaneCounters {
  refused: number;
  authenticated: number;
}

interface CardWaiter {
  resolve(cards: PeerCard[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class ControlPlane extends EventEmitter<ControlPlaneEvents> {
  private readonly options: ResolvedOptions;
  private readonly book: CardBook;
  private readonly sessionContext: SessionContext;
  private readonly server = net.createServer();
  private readonly dialers = new Map<number, Dialer>();
  private readonly sessions = new Set<PeerSession>();
  // At most one incoming authenticated connection per peer: a newer one replaces the older.
  private readonly inboundByPeer = new Map<number, PeerSession>();
  private readonly waiters = new Set<CardWaiter>();
  private readonly tally: ControlPlaneCounters = { refused: 0, authenticated: 0 };
  private unauthenticatedInbound = 0;
  private links: readonly string[];
  private listening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: ControlPlaneOptions) {
    super();
    this.options = resolveOptions(options);
    const { selfId, incarnation, card, clusterName, secret, handshakeTimeoutMs, replicaCount } = this.options;
    this.links = Array.from({ length: replicaCount }, () => '');
    this.book = new CardBook(replicaCount, { id: selfId, incarnation, card, links: this.links });
    this.sessionContext = {
      selfId,
      clusterName,
      secret,
      handshakeTimeoutMs,
      ownCard: () => ({ incarnation: this.options.incarnation, card: this.options.card, links: this.links }),
      replicaCount,
      pingIntervalMs: this.options.pingIntervalMs,
      silenceTimeoutMs: this.options.silenceTimeoutMs,
      log: (line) => this.log(line),
      isPeer: (id) => Number.isInteger(id) && id >= 0 && id < replicaCount && id !== selfId,
    };
  }

  /** Resolves once listening; rejects (and stays unusable) if the address cannot be bound. */
  async start(): Promise<void> {
    if (this.listening !== undefined) throw new Error('mu control: start() called twice');
    if (this.closing !== undefined) throw new Error('mu control: start() after close()');
    this.listening = this.listen();
    await this.listening;
    if (this.closing !== undefined) return;
    const { self, selfId } = this.options;
    this.server.on('error', (error) => this.log(`listener error: ${error.message}`));
    this.server.on('connection', (socket) => this.accept(socket));
    this.log(`replica ${selfId} listening on ${self.host}:${this.port()} (incarnation ${this.options.incarnation})`);
    for (const peer of this.options.others) this.startDialer(peer);
  }

  private listen(): Promise<void> {
    const { self, selfId } = this.options;
    return new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        const why = error.code === 'EADDRINUSE' ? 'the address is already in use' : (error.code ?? error.message);
        reject(new Error(`mu control: replica ${selfId} cannot listen on ${self.host}:${self.port}: ${why}`));
      };
      this.server.once('error', onError);
      this.server.listen({ host: self.host, port: self.port }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  /** The bound TCP port (useful when self's configured port is 0). */
  port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('mu control: not listening');
    return address.port;
  }

  cards(): Map<number, PeerCard> {
    return this.book.snapshot();
  }

  counters(): ControlPlaneCounters {
    return { ...this.tally };
  }

  /**
   * What this replica's connection ends toward each replica are connected to: the
   * incarnation of its card, or '' (none; this replica's own entry). Every peer holding
   * our card gets it again with the new links.
   */
  setLinks(links: readonly string[]): void {
    if (links.length !== this.options.replicaCount || links[this.options.selfId] !== '' || !links.every(isLinkEntry)) {
      throw new RangeError(`mu control: links need one entry per replica, '' for replica ${this.options.selfId} itself`);
    }
    if (links.every((entry, i) => entry === this.links[i])) return;
    this.links = [...links];
    this.book.relinkSelf(this.options.selfId, this.links);
    for (const session of this.sessions) session.resendOwnCard();
  }

  /**
   * The peers this replica has an open connection with, either way, that it heard from
   * within the silence timeout (pings keep a healthy one talking).
   */
  reachablePeers(): Set<number> {
    const peers = new Set<number>();
    for (const session of this.sessions) if (session.peerId !== undefined && session.live) peers.add(session.peerId);
    return peers;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** The cards known now (this replica's included), by replica id. */
  knownCards(): Map<number, PeerCard> {
    return this.book.snapshot();
  }

  waitForCards(timeoutMs: number): Promise<PeerCard[]> {
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      const problem = `waitForCards timeout must be a non-negative number of ms, got ${timeoutMs}`;
      return Promise.reject(new RangeError(`mu control: ${problem}`));
    }
    const complete = this.book.complete();
    if (complete !== undefined) return Promise.resolve(complete);
    if (this.closing !== undefined) return Promise.reject(new Error('mu control: control plane is closed'));
    return new Promise<PeerCard[]>((resolve, reject) => {
      const waiter: CardWaiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const missing = this.book.missing().join(', ');
          const self = this.options.selfId;
          reject(new Error(`mu control: replica ${self} waited ${timeoutMs} ms and still lacks the cards of replicas ${missing}`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const dialer of this.dialers.values()) dialer.stop();
    for (const session of this.sessions) session.close();
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error('mu control: control plane closed while waiting for cards'));
    }
    this.waiters.clear();
    // A close() racing start() must not leave the port bound once start() completes.
    await this.listening?.catch(() => undefined);
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private log(line: string): void {
    this.options.log(line);
  }

  private accept(socket: net.Socket): void {
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    if (this.unauthenticatedInbound >= this.options.maxUnauthenticatedConnections) {
      socket.on('error', () => undefined);
      const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      this.recordRefusal(`too many connections still in their handshake (${this.unauthenticatedInbound})`, remote);
      socket.destroy();
      return;
    }
    this.unauthenticatedInbound += 1;
    this.sessions.add(PeerSession.accept(socket, this.sessionContext, this.hooks));
  }

  private startDialer(peer: PeerAddress): void {
    const dialer = new Dialer({
      peer,
      reconnectDelayMs: this.options.reconnectDelayMs,
      maxReconnectDelayMs: this.options.maxReconnectDelayMs,
      connectTimeoutMs: this.options.handshakeTimeoutMs,
      log: (line) => this.log(line),
      connected: (socket) => {
        if (this.closing !== undefined) socket.destroy();
        else this.sessions.add(PeerSession.dial(socket, this.sessionContext, this.hooks, peer.id));
      },
    });
    this.dialers.set(peer.id, dialer);
    dialer.start();
  }

  private recordRefusal(reason: string, remote: string, direction = 'incoming'): void {
    this.tally.refused += 1;
    this.log(`replica ${this.options.selfId} refused ${direction} connection ${remote}: ${reason}`);
    this.emit('refused', reason, remote);
  }

  private readonly hooks: SessionHooks = {
    authenticated: (session) => {
      this.tally.authenticated += 1;
      const peerId = session.peerId;
      if (peerId === undefined) return;
      if (session.role === 'dialer') {
        this.dialers.get(peerId)?.succeeded();
        return;
      }
      this.unauthenticatedInbound -= 1;
      const older = this.inboundByPeer.get(peerId);
      this.inboundByPeer.set(peerId, session);
      older?.close();
    },
    card: (session, card) => this.learn(session, card),
    refused: (session, reason) =>
      this.recordRefusal(reason, session.remote, session.role === 'dialer' ? 'outgoing' : 'incoming'),
    closed: (session) => {
      this.sessions.delete(session);
      if (session.role === 'listener') {
        if (session.peerId === undefined) this.unauthenticatedInbound -= 1;
        else if (this.inboundByPeer.get(session.peerId) === session) this.inboundByPeer.delete(session.peerId);
      }
    },
  };

  private learn(session: PeerSession, card: PeerCard): void {
    const update = this.book.record(card);
    switch (update.kind) {
      case 'unchanged':
        return;
      case 'conflict':
        session.refuse(`replica ${card.id} sent a different card under the same incarnation ${card.incarnation}`);
        return;
      case 'learned':
        this.log(`learned the card of replica ${card.id} (incarnation ${card.incarnation})`);
        break;
      case 'restarted':
        this.log(`replica ${card.id} restarted: incarnation ${update.previousIncarnation} -> ${card.incarnation}`);
        break;
      case 'relinked':
        break;
    }
    this.emit('card', card);
    const complete = this.book.complete();
    if (complete === undefined) return;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(complete);
    }
    this.waiters.clear();
  }
}
