import crypto from 'node:crypto';
import { mock } from 'node:test';

import { expect } from 'chai';

import {
  type HandshakeTranscript,
  computeHandshakeMac,
  constantTimeEqual,
  createNonce,
  deriveChannelCiphers,
  verifyHandshakeMac,
} from './auth.js';

const SECRET = Buffer.from('a shared secret of 32 bytes.....', 'utf8');
const TRANSCRIPT: HandshakeTranscript = {
  cluster: 'alpha',
  listenerNonce: 'aa'.repeat(32),
  dialerNonce: 'bb'.repeat(32),
  dialerId: 1,
  listenerId: 0,
};

describe('control auth', () => {
  afterEach(() => mock.restoreAll());

  it('creates distinct 32-byte hex nonces', () => {
    const a = createNonce();
    expect(a).to.match(/^[0-9a-f]{64}$/);
    expect(createNonce()).to.not.equal(a);
  });

  it('binds the MAC to every transcript field, the role and the secret', () => {
    const base = computeHandshakeMac(SECRET, 'dialer', TRANSCRIPT);
    expect(base).to.have.length(32);
    const variants: Buffer[] = [
      computeHandshakeMac(SECRET, 'listener', TRANSCRIPT),
      computeHandshakeMac(Buffer.from('another secret of 32 bytes......'), 'dialer', TRANSCRIPT),
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, cluster: 'beta' }),
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, listenerNonce: 'cc'.repeat(32) }),
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, dialerNonce: 'cc'.repeat(32) }),
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, dialerId: 2 }),
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, listenerId: 2 }),
      // Swapping the ids must not give the same MAC (a listener's proof is not a dialer's).
      computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT, dialerId: 0, listenerId: 1 }),
    ];
    for (const [index, variant] of variants.entries()) {
      expect(variant.equals(base), `variant ${index}`).to.equal(false);
    }
    expect(computeHandshakeMac(SECRET, 'dialer', { ...TRANSCRIPT }).equals(base)).to.equal(true);
  });

  it('verifies a good MAC and rejects altered, truncated and non-hex ones without throwing', () => {
    const good = computeHandshakeMac(SECRET, 'dialer', TRANSCRIPT).toString('hex');
    expect(verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, good)).to.equal(true);
    const flipped = (good[0] === '0' ? '1' : '0') + good.slice(1);
    expect(verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, flipped)).to.equal(false);
    expect(verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, good.slice(0, 62))).to.equal(false);
    expect(verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, good.toUpperCase())).to.equal(false);
    expect(verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, 'zz'.repeat(32))).to.equal(false);
    expect(verifyHandshakeMac(SECRET, 'listener', TRANSCRIPT, good)).to.equal(false);
  });

  it('compares MACs with crypto.timingSafeEqual, malformed ones included', () => {
    const spy = mock.method(crypto, 'timingSafeEqual');
    const good = computeHandshakeMac(SECRET, 'dialer', TRANSCRIPT).toString('hex');
    verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, good);
    verifyHandshakeMac(SECRET, 'dialer', TRANSCRIPT, 'not hex at all');
    expect(spy.mock.callCount()).to.equal(2);
    expect(constantTimeEqual(Buffer.from('ab'), Buffer.from('ab'))).to.equal(true);
    expect(spy.mock.callCount()).to.equal(3);
    // Different lengths are a mismatch, not an exception.
    expect(constantTimeEqual(Buffer.from('ab'), Buffer.from('abc'))).to.equal(false);
  });

  it('seals cards so that only the other end of the same connection opens them, once and in order', () => {
    const dialer = deriveChannelCiphers(SECRET, 'dialer', TRANSCRIPT);
    const listener = deriveChannelCiphers(SECRET, 'listener', TRANSCRIPT);
    const card = Buffer.from('gid, qpn, rkey');
    const first = dialer.send.seal('card|1|7', card);
    expect(first.includes(card)).to.equal(false);
    expect(listener.receive.open('card|1|7', first)).to.deep.equal(card);
    // Replaying the same sealed message fails: the counter moved on.
    expect(listener.receive.open('card|1|7', first)).to.equal(undefined);

    const second = dialer.send.seal('card|1|7', card);
    const other = deriveChannelCiphers(SECRET, 'listener', { ...TRANSCRIPT, dialerNonce: 'dd'.repeat(32) });
    other.receive.open('card|1|7', Buffer.alloc(32)); // keep counters aligned with `listener`
    expect(other.receive.open('card|1|7', second), 'another connection').to.equal(undefined);
    // A message cannot be reflected back to its sender either.
    const reflected = deriveChannelCiphers(SECRET, 'dialer', TRANSCRIPT);
    reflected.receive.open('card|1|7', Buffer.alloc(32));
    expect(reflected.receive.open('card|1|7', second), 'reflected').to.equal(undefined);
    // Nor be relabelled: the envelope is authenticated too.
    const relabelled = deriveChannelCiphers(SECRET, 'listener', TRANSCRIPT);
    relabelled.receive.open('x', Buffer.alloc(32));
    expect(relabelled.receive.open('card|2|7', second), 'relabelled').to.equal(undefined);
    expect(relabelled.receive.open('card|1|7', Buffer.alloc(4)), 'truncated').to.equal(undefined);
  });
});
