// Helpers for the control-plane tests: free ports, cluster options, and a raw protocol client
// that can follow the handshake exactly or break it on purpose. Not used outside tests.
import { once } from 'node:events';
import net from 'node:net';

import {
  type ChannelCiphers,
  type HandshakeTranscript,
  computeHandshakeMac,
  createNonce,
  deriveChannelCiphers,
} from './auth.js';
import {
  ControlPlane,
  type ControlPlaneOptions,
  type PeerAddress,
  type PeerCard,
} from './control_plane.js';
import { FrameDecoder, type FrameMessage, encodeFrame } from './frame.js';
import { cardAssociatedData } from './messages.js';
import { freePorts } from '../testing/free_port.js';

export { freePorts };

export const HOST = '127.0.0.1';
export const CLUSTER = 'test-cluster';
export const SECRET = Buffer.from('0123456789abcdef0123456789abcdef', 'utf8');
export const WRONG_SECRET = Buffer.from('fedcba9876543210fedcba9876543210', 'utf8');

export function peersOn(ports: number[]): PeerAddress[] {
  return ports.map((port, id) => ({ id, host: HOST, port }));
}

export function cardOf(id: number, generation = 0): Buffer {
  return Buffer.from(`card of replica ${id}, generation ${generation}`, 'utf8');
}

/** Collects log lines so that tests stay quiet and can inspect what was logged. */
export class LogSink {
  readonly lines: string[] = [];
  readonly log = (line: string): void => {
    this.lines.push(line);
  };
}

export function planeOptions(
  ports: number[],
  selfId: number,
  sink: LogSink,
  overrides: Partial<ControlPlaneOptions> = {},
): ControlPlaneOptions {
  return {
    selfId,
    peers: peersOn(ports),
    clusterName: CLUSTER,
    secret: SECRET,
    card: cardOf(selfId),
    incarnation: `${1000 + selfId}`,
    handshakeTimeoutMs: 1000,
    reconnectDelayMs: 20,
    maxReconnectDelayMs: 200,
    log: sink.log,
    ...overrides,
  };
}

/** Tracks what a test started so afterEach can close all of it. */
export class Cleanup {
  private readonly planes = new Set<ControlPlane>();
  private readonly sockets = new Set<net.Socket>();
  private readonly servers = new Set<net.Server>();

  plane(plane: ControlPlane): ControlPlane {
    this.planes.add(plane);
    return plane;
  }

  socket<T extends net.Socket>(socket: T): T {
    this.sockets.add(socket);
    return socket;
  }

  server(server: net.Server): net.Server {
    this.servers.add(server);
    return server;
  }

  async run(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all([...this.planes].map((plane) => plane.close()));
    const closing = [...this.servers].filter((server) => server.listening);
    await Promise.all(closing.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    this.planes.clear();
    this.sockets.clear();
    this.servers.clear();
  }
}

/** A framed connection driven by the test, one message at a time. */
export class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly inbox: FrameMessage[] = [];
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;
  isClosed = false;
  /** Every message received so far, in order (next() consumes from a separate queue). */
  readonly received: FrameMessage[] = [];
  /** The hex MACs this peer sent, so tests can check none of them reached a log. */
  readonly sentMacs: string[] = [];

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      const messages = this.decoder.push(chunk);
      this.inbox.push(...messages);
      this.received.push(...messages);
      this.wake?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static async connect(port: number): Promise<RawPeer> {
    const socket = net.connect({ host: HOST, port });
    await once(socket, 'connect');
    return new RawPeer(socket);
  }

  send(message: object): void {
    this.socket.write(encodeFrame(message));
  }

  /** The next message, or undefined once the connection closed with nothing left. */
  async next(timeoutMs = 2000): Promise<FrameMessage | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0 && !this.isClosed) {
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.inbox.shift();
  }

  /** Resolves true if the other end closes within timeoutMs. */
  async closesWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const result = await Promise.race([this.closed.then(() => true), timedOut]);
    clearTimeout(timer);
    return result;
  }

  /**
   * Plays the dialer's side of the handshake as replica `dialerId`; returns the channel ciphers
   * if the listener welcomed us, undefined if it closed the connection instead.
   */
  async authenticateAs(dialerId: number, secret: Buffer, cluster = CLUSTER): Promise<ChannelCiphers | undefined> {
    const challenge = await this.next();
    if (challenge === undefined || challenge['type'] !== 'challenge') throw new Error('expected a challenge');
    const transcript: HandshakeTranscript = {
      cluster,
      listenerNonce: String(challenge['nonce']),
      dialerNonce: createNonce(),
      dialerId,
      listenerId: Number(challenge['listener_id']),
    };
    const mac = computeHandshakeMac(secret, 'dialer', transcript).toString('hex');
    this.sentMacs.push(mac);
    this.send({ type: 'auth', cluster, dialer_id: dialerId, nonce: transcript.dialerNonce, mac });
    const welcome = await this.next();
    if (welcome === undefined) return undefined;
    if (welcome['type'] !== 'welcome') throw new Error(`expected welcome, got ${String(welcome['type'])}`);
    return deriveChannelCiphers(secret, 'dialer', transcript);
  }

  sendCard(ciphers: ChannelCiphers, id: number, incarnation: string, card: Buffer, links: string[] = ['', '', '']): void {
    const sealed = ciphers.send.seal(cardAssociatedData(id, incarnation, links), card);
    this.send({ type: 'card', id, incarnation, links, card: sealed.toString('base64') });
  }
}

/** Waits for an event matching a predicate; `subscribe` returns the unsubscribe function. */
function waitFor<T>(subscribe: (offer: (value: T) => void) => () => void, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const unsubscribe = subscribe((value) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(value);
    });
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
  });
}

/** The next 'card' event that `accept` takes. */
export function nextCard(plane: ControlPlane, accept: (card: PeerCard) => boolean, timeoutMs = 3000): Promise<PeerCard> {
  return waitFor<PeerCard>(
    (offer) => {
      const listener = (card: PeerCard): void => {
        if (accept(card)) offer(card);
      };
      plane.on('card', listener);
      return () => plane.off('card', listener);
    },
    "matching 'card' event",
    timeoutMs,
  );
}

/** The next 'refused' event whose reason matches `pattern`; resolves with [reason, remote]. */
export function nextRefusal(plane: ControlPlane, pattern: RegExp, timeoutMs = 3000): Promise<[string, string]> {
  return waitFor<[string, string]>(
    (offer) => {
      const listener = (reason: string, remote: string): void => {
        if (pattern.test(reason)) offer([reason, remote]);
      };
      plane.on('refused', listener);
      return () => plane.off('refused', listener);
    },
    `'refused' event matching ${pattern}`,
    timeoutMs,
  );
}
