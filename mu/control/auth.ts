// Mutual challenge-response over the shared cluster secret (HMAC-SHA256), and the keys that
// protect a connection once both ends have proven the secret. Every check of secret-derived
// bytes goes through constantTimeEqual so a peer cannot learn a MAC byte by byte from timing.
//
// `crypto.timingSafeEqual` is called through the module object (not a named import) on
// purpose: the tests wrap it to prove that verification really goes through it.
import crypto from 'node:crypto';

export const PROTOCOL_VERSION = 'mu-control v2'; // v2: card messages carry links
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
export const MIN_SECRET_BYTES = 16;

export type HandshakeRole = 'dialer' | 'listener';

/** Everything both ends agreed on during one handshake; each MAC and key is bound to all of it. */
export interface HandshakeTranscript {
  cluster: string;
  listenerNonce: string; // hex, chosen by the listener
  dialerNonce: string; // hex, chosen by the dialer
  dialerId: number;
  listenerId: number;
}

export function createNonce(): string {
  return crypto.randomBytes(NONCE_BYTES).toString('hex');
}

export function isHex(text: string, bytes: number): boolean {
  return text.length === bytes * 2 && /^[0-9a-f]+$/.test(text);
}

// The cluster name cannot contain '|' (see options.ts), the nonces are fixed-length hex and the
// ids integers, so this joined string names exactly one (purpose, transcript) pair.
function transcriptLabel(purpose: string, transcript: HandshakeTranscript): string {
  const { cluster, listenerNonce, dialerNonce, dialerId, listenerId } = transcript;
  return [PROTOCOL_VERSION, purpose, cluster, listenerNonce, dialerNonce, dialerId, listenerId].join('|');
}

/** The MAC that `role` sends to prove it holds the secret; the role label stops reflection. */
export function computeHandshakeMac(secret: Buffer, role: HandshakeRole, transcript: HandshakeTranscript): Buffer {
  return crypto.createHmac('sha256', secret).update(transcriptLabel(role, transcript), 'utf8').digest();
}

export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  // timingSafeEqual throws on a length mismatch; lengths are public (a MAC is always 32 bytes).
  if (a.length !== b.length) return false;
  return crypto.timingSafeEqual(a, b);
}

/** Checks a received MAC (hex, as sent on the wire); malformed input is simply a mismatch. */
export function verifyHandshakeMac(
  secret: Buffer,
  role: HandshakeRole,
  transcript: HandshakeTranscript,
  receivedMacHex: string,
): boolean {
  const expected = computeHandshakeMac(secret, role, transcript);
  const wellFormed = isHex(receivedMacHex, MAC_BYTES);
  const received = wellFormed ? Buffer.from(receivedMacHex, 'hex') : Buffer.alloc(MAC_BYTES);
  // Compare even when the input was malformed, so that case costs the same time.
  return constantTimeEqual(expected, received) && wellFormed;
}

const GCM_TAG_BYTES = 16;

/**
 * One direction of an authenticated connection: AES-256-GCM with a key derived from the secret
 * and both nonces, and an implicit message counter as the IV. Cards travel sealed, so someone
 * watching the wire learns nothing about them, and a replayed, reordered or altered message
 * fails to open.
 */
export class DirectionalCipher {
  private sequence = 0n;

  constructor(private readonly key: Buffer) {}

  seal(associatedData: string, plaintext: Buffer): Buffer {
    const cipher = crypto.createCipheriv('aes-256-gcm', this.key, this.nextIv());
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([body, cipher.getAuthTag()]);
  }

  /** Returns undefined when the message was not sealed by the other end of this connection. */
  open(associatedData: string, sealed: Buffer): Buffer | undefined {
    // The counter advances even on failure: the connection is dropped after one anyway.
    const iv = this.nextIv();
    if (sealed.length < GCM_TAG_BYTES) return undefined;
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.key, iv);
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - GCM_TAG_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
  }

  private nextIv(): Buffer {
    const iv = Buffer.alloc(12);
    iv.writeBigUInt64BE(this.sequence, 4);
    this.sequence += 1n;
    return iv;
  }
}

export interface ChannelCiphers {
  send: DirectionalCipher;
  receive: DirectionalCipher;
}

/**
 * Keys for one connection, from the viewpoint of `role`. The nonces are fresh per connection,
 * so a key (and therefore a counter IV) is never reused across connections.
 */
export function deriveChannelCiphers(secret: Buffer, role: HandshakeRole, transcript: HandshakeTranscript): ChannelCiphers {
  const salt = Buffer.from(transcript.listenerNonce + transcript.dialerNonce, 'hex');
  const keyFor = (direction: string): Buffer =>
    Buffer.from(crypto.hkdfSync('sha256', secret, salt, transcriptLabel(`key ${direction}`, transcript), 32));
  const dialerToListener = new DirectionalCipher(keyFor('dialer->listener'));
  const listenerToDialer = new DirectionalCipher(keyFor('listener->dialer'));
  return role === 'dialer'
    ? { send: dialerToListener, receive: listenerToDialer }
    : { send: listenerToDialer, receive: dialerToListener };
}
