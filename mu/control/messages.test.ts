import { expect } from 'chai';

import { ProtocolError, isIncarnation, parseMessage } from './messages.js';

const NONCE = 'ab'.repeat(32);

describe('control messages', () => {
  it('parses each well-formed message type', () => {
    expect(parseMessage({ type: 'challenge', cluster: 'c', listener_id: 0, nonce: NONCE })).to.deep.equal({
      type: 'challenge',
      cluster: 'c',
      listener_id: 0,
      nonce: NONCE,
    });
    expect(parseMessage({ type: 'auth', cluster: 'c', dialer_id: 15, nonce: NONCE, mac: NONCE }).type).to.equal('auth');
    expect(parseMessage({ type: 'welcome', mac: NONCE }).type).to.equal('welcome');
    expect(parseMessage({ type: 'ping' })).to.deep.equal({ type: 'ping' });
    expect(parseMessage({ type: 'card', id: 2, incarnation: '0xdeadbeef', links: ['', '0x2a/1/0', ''], card: 'AAEC' })).to.include({ type: 'card', id: 2 });
  });

  it('refuses unknown types, missing or extra fields and out-of-range values with the field named', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ type: 'hello' }, /unknown message type "hello"/],
      [{ nonce: NONCE }, /unknown message type/],
      [{ type: 'welcome' }, /field mac/],
      [{ type: 'welcome', mac: NONCE, card: 'AA==' }, /unexpected fields card/],
      [{ type: 'ping', id: 1 }, /unexpected fields id/],
      [{ type: 'auth', cluster: 'c', dialer_id: 16, nonce: NONCE, mac: NONCE }, /field dialer_id/],
      [{ type: 'auth', cluster: 'c', dialer_id: 1.5, nonce: NONCE, mac: NONCE }, /field dialer_id/],
      [{ type: 'auth', cluster: 'a|b', dialer_id: 1, nonce: NONCE, mac: NONCE }, /field cluster/],
      [{ type: 'challenge', cluster: 'c', listener_id: 0, nonce: 'abc' }, /field nonce/],
      [{ type: 'card', id: 1, incarnation: 'soon', links: ['', ''], card: 'AA==' }, /field incarnation/],
      [{ type: 'card', id: 1, incarnation: '1', links: ['', ''], card: 'not base64!' }, /field card/],
      // Non-canonical base64 (stray padding bits) has more than one spelling: refused.
      [{ type: 'card', id: 1, incarnation: '1', links: ['', ''], card: 'AB==' }, /field card/],
      [{ type: 'card', id: 1, incarnation: '1', card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: [], card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: ['', 'soon/0/0'], card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: ['', '1'], card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: ['', '1/01/0'], card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: ['', 7], card: 'AA==' }, /field links/],
      [{ type: 'card', id: 1, incarnation: '1', links: Array.from({ length: 17 }, () => ''), card: 'AA==' }, /field links/],
    ];
    for (const [raw, reason] of cases) {
      expect(() => parseMessage(raw), JSON.stringify(raw)).to.throw(ProtocolError, reason);
    }
  });

  it('accepts 64-bit incarnations in decimal or hex only', () => {
    expect(isIncarnation('18446744073709551615')).to.equal(true);
    expect(isIncarnation('18446744073709551616')).to.equal(false);
    expect(isIncarnation('0xffffffffffffffff')).to.equal(true);
    expect(isIncarnation('ffffffffffffffff0')).to.equal(false);
    expect(isIncarnation('')).to.equal(false);
    expect(isIncarnation(7)).to.equal(false);
  });
});
