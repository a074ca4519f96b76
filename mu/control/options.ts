// Options of a control plane, checked once at construction so that a misconfigured replica
// fails loudly at startup instead of refusing (or being refused by) its peers later.
import { MIN_SECRET_BYTES } from './auth.js';
import { MAX_CARD_BYTES, MAX_REPLICAS, isClusterName, isIncarnation } from './messages.js';

export interface PeerAddress {
  id: number;
  host: string;
  port: number;
}

export interface ControlPlaneOptions {
  selfId: number;
  /** Every replica, self included (self's host/port is where we listen). */
  peers: PeerAddress[];
  clusterName: string;
  /** Shared cluster secret, at least 16 bytes. */
  secret: Buffer;
  /** This replica's card: opaque bytes from the engine, at most 64 KiB. */
  card: Buffer;
  /** This replica's incarnation: a random 64-bit value as decimal or hex. */
  incarnation: string;
  handshakeTimeoutMs?: number;
  reconnectDelayMs?: number;
  /** Ceiling of the redial backoff. */
  maxReconnectDelayMs?: number;
  /** Incoming connections still in their handshake; more are closed at once. */
  maxUnauthenticatedConnections?: number;
  /** How often an open connection sends a ping (so silence means a peer out of reach). */
  pingIntervalMs?: number;
  /** An open connection that hears nothing for this long is closed (and redialed). */
  silenceTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface ResolvedOptions {
  selfId: number;
  self: PeerAddress;
  /** The others, sorted by id. */
  others: PeerAddress[];
  replicaCount: number;
  clusterName: string;
  secret: Buffer;
  card: Buffer;
  incarnation: string;
  handshakeTimeoutMs: number;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  maxUnauthenticatedConnections: number;
  pingIntervalMs: number;
  silenceTimeoutMs: number;
  log: (line: string) => void;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 2000;
export const DEFAULT_RECONNECT_DELAY_MS = 100;
export const DEFAULT_MAX_RECONNECT_DELAY_MS = 2000;
export const DEFAULT_MAX_UNAUTHENTICATED_CONNECTIONS = 64;
// A cut link leaves TCP connections established for minutes (keepalive takes its time):
// pings make silence visible within seconds, so "reachable" means heard from lately.
export const DEFAULT_PING_INTERVAL_MS = 1000;
export const DEFAULT_SILENCE_TIMEOUT_MS = 5000;

function fail(problem: string): never {
  throw new Error(`mu control: invalid options: ${problem}`);
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) fail(`${name} must be a positive integer, got ${value}`);
  return value;
}

function checkPeer(peer: PeerAddress, isSelf: boolean): void {
  if (typeof peer.host !== 'string' || peer.host.length === 0) fail(`peer ${peer.id} has no host`);
  // Port 0 only makes sense where we listen (the OS picks one, see ControlPlane.port()).
  const lowestPort = isSelf ? 0 : 1;
  if (!Number.isInteger(peer.port) || peer.port < lowestPort || peer.port > 65535) {
    fail(`peer ${peer.id} has port ${peer.port}, expected ${lowestPort}..65535`);
  }
}

export function resolveOptions(options: ControlPlaneOptions): ResolvedOptions {
  const { selfId, peers, clusterName, secret, card, incarnation } = options;
  if (!Buffer.isBuffer(secret) || secret.length < MIN_SECRET_BYTES) {
    fail(`the cluster secret must be a Buffer of at least ${MIN_SECRET_BYTES} bytes`);
  }
  if (!isClusterName(clusterName)) fail('clusterName must be 1..64 characters of [A-Za-z0-9._-]');
  if (!Buffer.isBuffer(card) || card.length > MAX_CARD_BYTES) {
    fail(`card must be a Buffer of at most ${MAX_CARD_BYTES} bytes`);
  }
  if (!isIncarnation(incarnation)) fail('incarnation must be a 64-bit value written in decimal or hex');
  if (!Array.isArray(peers) || peers.length === 0 || peers.length > MAX_REPLICAS) {
    fail(`peers must list 1..${MAX_REPLICAS} replicas`);
  }
  const sorted = [...peers].sort((a, b) => a.id - b.id);
  sorted.forEach((peer, index) => {
    if (peer.id !== index) {
      fail(`peer ids must be 0..${peers.length - 1}, each once (got ${sorted.map((p) => p.id).join(', ')})`);
    }
    checkPeer(peer, peer.id === selfId);
  });
  const self = sorted.find((peer) => peer.id === selfId);
  if (self === undefined) fail(`selfId ${selfId} is not one of the peers`);
  return {
    selfId,
    self: { ...self },
    others: sorted.filter((peer) => peer.id !== selfId).map((peer) => ({ ...peer })),
    replicaCount: sorted.length,
    clusterName,
    // Copies: a caller reusing its buffers must not change what we prove or hand out.
    secret: Buffer.from(secret),
    card: Buffer.from(card),
    incarnation,
    handshakeTimeoutMs: positiveInteger(options.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, 'handshakeTimeoutMs'),
    reconnectDelayMs: positiveInteger(options.reconnectDelayMs, DEFAULT_RECONNECT_DELAY_MS, 'reconnectDelayMs'),
    maxReconnectDelayMs: positiveInteger(options.maxReconnectDelayMs, DEFAULT_MAX_RECONNECT_DELAY_MS, 'maxReconnectDelayMs'),
    maxUnauthenticatedConnections: positiveInteger(
      options.maxUnauthenticatedConnections,
      DEFAULT_MAX_UNAUTHENTICATED_CONNECTIONS,
      'maxUnauthenticatedConnections',
    ),
    ...pingTimes(options),
    log: options.log ?? ((line: string) => console.error(`mu control: ${line}`)),
  };
}

function pingTimes(options: ControlPlaneOptions): { pingIntervalMs: number; silenceTimeoutMs: number } {
  const pingIntervalMs = positiveInteger(options.pingIntervalMs, DEFAULT_PING_INTERVAL_MS, 'pingIntervalMs');
  const silenceTimeoutMs = positiveInteger(options.silenceTimeoutMs, Math.max(DEFAULT_SILENCE_TIMEOUT_MS, 3 * pingIntervalMs), 'silenceTimeoutMs');
  if (silenceTimeoutMs < 2 * pingIntervalMs) fail(`silenceTimeoutMs (${silenceTimeoutMs}) must be at least twice pingIntervalMs (${pingIntervalMs})`);
  return { pingIntervalMs, silenceTimeoutMs };
}
