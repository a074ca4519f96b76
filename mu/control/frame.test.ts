import { expect } from 'chai';

import { FrameDecoder, FrameError, MAX_FRAME_BYTES, encodeFrame } from './frame.js';

function lengthPrefix(length: number): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(length, 0);
  return prefix;
}

function rawFrame(payload: string): Buffer {
  const bytes = Buffer.from(payload, 'utf8');
  return Buffer.concat([lengthPrefix(bytes.length), bytes]);
}

describe('control frames', () => {
  it('encodes a 4-byte big-endian length followed by the JSON payload', () => {
    const frame = encodeFrame({ type: 'x', n: 1 });
    const payload = '{"type":"x","n":1}';
    expect(frame.readUInt32BE(0)).to.equal(payload.length);
    expect(frame.subarray(4).toString('utf8')).to.equal(payload);
  });

  it('decodes a frame delivered one byte at a time', () => {
    const decoder = new FrameDecoder();
    const frame = encodeFrame({ type: 'challenge', nonce: 'ab' });
    const decoded = [];
    for (let i = 0; i < frame.length; i += 1) {
      const messages = decoder.push(frame.subarray(i, i + 1));
      // Nothing may come out before the last byte arrives.
      expect(messages.length, `after byte ${i}`).to.equal(i === frame.length - 1 ? 1 : 0);
      decoded.push(...messages);
    }
    expect(decoded).to.deep.equal([{ type: 'challenge', nonce: 'ab' }]);
    expect(decoder.bufferedBytes()).to.equal(0);
  });

  it('decodes several frames in one chunk, and a frame split across chunks', () => {
    const decoder = new FrameDecoder();
    const stream = Buffer.concat([encodeFrame({ a: 1 }), encodeFrame({ b: 2 }), encodeFrame({ c: 3 })]);
    const cut = stream.length - 5;
    expect(decoder.push(stream.subarray(0, cut))).to.deep.equal([{ a: 1 }, { b: 2 }]);
    expect(decoder.push(stream.subarray(cut))).to.deep.equal([{ c: 3 }]);
  });

  it('accepts a frame of exactly the limit and refuses one byte more before buffering it', () => {
    const limit = 64;
    const atLimit = `{"p":"${'x'.repeat(limit - 8)}"}`;
    expect(Buffer.byteLength(atLimit)).to.equal(limit);
    expect(new FrameDecoder(limit).push(rawFrame(atLimit))).to.have.length(1);

    const decoder = new FrameDecoder(limit);
    expect(() => decoder.push(lengthPrefix(limit + 1))).to.throw(FrameError, /exceeds the 64-byte limit/);
    expect(decoder.bufferedBytes()).to.equal(0);
  });

  it('refuses a huge length prefix at once (the default limit is 128 KiB)', () => {
    const decoder = new FrameDecoder();
    expect(decoder.maxFrameBytes).to.equal(128 * 1024);
    expect(() => decoder.push(Buffer.from([0xff, 0xff, 0xff, 0xff]))).to.throw(FrameError, /exceeds/);
    expect(() => decoder.push(lengthPrefix(MAX_FRAME_BYTES + 1))).to.throw(FrameError);
  });

  it('never holds more than one frame of the limit while assembling', () => {
    const limit = 1024;
    const decoder = new FrameDecoder(limit);
    decoder.push(lengthPrefix(limit));
    for (let i = 0; i < 10; i += 1) decoder.push(Buffer.alloc(100, 0x20));
    expect(decoder.bufferedBytes()).to.equal(4 + 1000);
    expect(decoder.bufferedBytes()).to.be.at.most(4 + limit);
  });

  it('refuses a zero length', () => {
    expect(() => new FrameDecoder().push(lengthPrefix(0))).to.throw(FrameError, /zero length/);
  });

  it('refuses bad JSON, invalid UTF-8 and JSON that is not an object', () => {
    expect(() => new FrameDecoder().push(rawFrame('{"type":'))).to.throw(FrameError, /not valid UTF-8 JSON/);
    const badUtf8 = Buffer.concat([lengthPrefix(4), Buffer.from([0x22, 0xc3, 0x28, 0x22])]);
    expect(() => new FrameDecoder().push(badUtf8)).to.throw(FrameError, /not valid UTF-8 JSON/);
    for (const payload of ['[1,2]', '"text"', '42', 'null']) {
      expect(() => new FrameDecoder().push(rawFrame(payload)), payload).to.throw(FrameError, /not hold a JSON object/);
    }
  });

  it('stays failed after an error: later bytes cannot be framed any more', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(rawFrame('nope'))).to.throw(FrameError);
    expect(() => decoder.push(encodeFrame({ ok: true }))).to.throw(FrameError);
  });

  it('refuses to encode a message larger than the limit', () => {
    expect(() => encodeFrame({ p: 'x'.repeat(100) }, 64)).to.throw(FrameError, /exceeds the 64-byte limit/);
  });
});
