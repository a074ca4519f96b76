// The wire messages of the control protocol and their validation. A frame is only an object
// with unchecked fields; parseMessage turns it into one of these or says precisely why not.
import { MAC_BYTES, NONCE_BYTES, isHex } from './auth.js';
import type { FrameMessage } from './frame.js';

export const MAX_REPLICAS = 16;
export const MAX_CARD_BYTES = 64 * 1024;
// AES-GCM appends a 16-byte tag to the sealed card.
const MAX_SEALED_CARD_BYTES = MAX_CARD_BYTES + 16;

/** listener → dialer, first message on every connection. */
export interface ChallengeMessage {
  type: 'challenge';
  cluster: string;
  listener_id: number;
  nonce: string;
}

/** dialer → listener: proves the secret over both nonces. */
export interface AuthMessage {
  type: 'auth';
  cluster: string;
  dialer_id: number;
  nonce: string;
  mac: string;
}

/** listener → dialer: proves the secret back, before the dialer reveals anything. */
export interface WelcomeMessage {
  type: 'welcome';
  mac: string;
}

/**
 * Either way, after the handshake: `card` is base64 of the card sealed for this connection.
 * `links[i]` says what the sender's connection ends toward replica i are connected to:
 * `incarnation/resets/answered` (mu/link_resets.ts: the incarnation of i's card, and the
 * paired resets of that link), or '' when they are not connected (its own entry). It
 * travels in the clear but under the seal (associated data): it says nothing secret, and
 * nobody can alter it. A replica sends its card again whenever its links change.
 */
export interface CardMessage {
  type: 'card';
  id: number;
  incarnation: string;
  links: string[];
  card: string;
}

/** Either way, on an open connection, every pingIntervalMs: silence means out of reach. */
export interface PingMessage {
  type: 'ping';
}

export type ControlMessage = ChallengeMessage | AuthMessage | WelcomeMessage | CardMessage | PingMessage;

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export function isClusterName(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(value);
}

/** A random 64-bit value written as decimal or as hex (with or without 0x). */
export function isIncarnation(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  if (/^[0-9]{1,20}$/.test(value)) return BigInt(value) < 2n ** 64n;
  return /^(?:0x)?[0-9a-fA-F]{1,16}$/.test(value);
}

export function isReplicaId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < MAX_REPLICAS;
}

const FIELDS: Record<ControlMessage['type'], readonly string[]> = {
  challenge: ['type', 'cluster', 'listener_id', 'nonce'],
  auth: ['type', 'cluster', 'dialer_id', 'nonce', 'mac'],
  welcome: ['type', 'mac'],
  card: ['type', 'id', 'incarnation', 'links', 'card'],
  ping: ['type'],
};

function isMessageType(value: unknown): value is ControlMessage['type'] {
  return typeof value === 'string' && Object.hasOwn(FIELDS, value);
}

function checkedField<T>(raw: FrameMessage, field: string, check: (value: unknown) => value is T, what: string): T {
  const value = raw[field];
  if (!check(value)) throw new ProtocolError(`field ${field} is not ${what}`);
  return value;
}

const isNonce = (value: unknown): value is string => typeof value === 'string' && isHex(value, NONCE_BYTES);
const isMac = (value: unknown): value is string => typeof value === 'string' && isHex(value, MAC_BYTES);

/** `incarnation/resets/answered` (mu/link_resets.ts), or '' for not connected. */
export function isLinkEntry(value: unknown): value is string {
  if (value === '') return true;
  if (typeof value !== 'string') return false;
  const parts = value.split('/');
  return parts.length === 3 && isIncarnation(parts[0]) && parts.slice(1).every((count) => /^(0|[1-9][0-9]{0,8})$/.test(count));
}

/** One entry per replica. */
function isLinks(value: unknown): value is string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_REPLICAS) return false;
  return value.every(isLinkEntry);
}

/** Canonical base64 only (what Buffer produces), so a card has exactly one encoding. */
function isSealedCardBase64(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > Math.ceil(MAX_SEALED_CARD_BYTES / 3) * 4) return false;
  return Buffer.from(value, 'base64').toString('base64') === value;
}

export function parseMessage(raw: FrameMessage): ControlMessage {
  const type = raw['type'];
  if (!isMessageType(type)) throw new ProtocolError(`unknown message type ${JSON.stringify(type)?.slice(0, 32)}`);
  const allowed = FIELDS[type];
  const extra = Object.keys(raw).filter((field) => !allowed.includes(field));
  if (extra.length > 0) throw new ProtocolError(`${type} message has unexpected fields ${extra.slice(0, 4).join(', ')}`);
  switch (type) {
    case 'challenge':
      return {
        type,
        cluster: checkedField(raw, 'cluster', isClusterName, 'a cluster name'),
        listener_id: checkedField(raw, 'listener_id', isReplicaId, 'a replica id'),
        nonce: checkedField(raw, 'nonce', isNonce, `${NONCE_BYTES} bytes of hex`),
      };
    case 'auth':
      return {
        type,
        cluster: checkedField(raw, 'cluster', isClusterName, 'a cluster name'),
        dialer_id: checkedField(raw, 'dialer_id', isReplicaId, 'a replica id'),
        nonce: checkedField(raw, 'nonce', isNonce, `${NONCE_BYTES} bytes of hex`),
        mac: checkedField(raw, 'mac', isMac, `${MAC_BYTES} bytes of hex`),
      };
    case 'welcome':
      return { type, mac: checkedField(raw, 'mac', isMac, `${MAC_BYTES} bytes of hex`) };
    case 'ping':
      return { type };
    case 'card':
      return {
        type,
        id: checkedField(raw, 'id', isReplicaId, 'a replica id'),
        incarnation: checkedField(raw, 'incarnation', isIncarnation, 'a decimal or hex 64-bit incarnation'),
        links: checkedField(raw, 'links', isLinks, `an array of 1 to ${MAX_REPLICAS} entries 'incarnation/resets/answered' or ''`),
        card: checkedField(raw, 'card', isSealedCardBase64, `canonical base64 of at most ${MAX_SEALED_CARD_BYTES} bytes`),
      };
  }
}

/** Associated data of a sealed card: the envelope fields cannot be swapped under the seal. */
export function cardAssociatedData(id: number, incarnation: string, links: readonly string[]): string {
  // Incarnations hold no ',' or '|', so the joined list reads back one way only.
  return `card|${id}|${incarnation}|${links.join(',')}`;
}
