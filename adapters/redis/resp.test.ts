// encodeCommand and ReplyFramer without a server: every reply type, splits anywhere,
// large payloads, malformed input.
import { expect } from 'chai';

import { decodeCommand, encodeCommand, ReplyFramer, RespError } from './resp.js';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

// A small seeded generator (mulberry32), so failures reproduce.
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(next: () => number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = Math.floor(next() * 256);
  // Make CRLF and length-looking text inside payloads common.
  if (length >= 6 && next() < 0.5) buf.write('\r\n$3\r\n', Math.floor(next() * (length - 5)), 'latin1');
  return buf;
}

function randomReply(next: () => number, depth: number): Buffer {
  const kind = Math.floor(next() * (depth < 3 ? 9 : 7));
  switch (kind) {
    case 0:
      return b(`+${'OK QUEUED PONG'.slice(0, Math.floor(next() * 14))}\r\n`);
    case 1:
      return b(`-ERR something ${Math.floor(next() * 1000)}\r\n`);
    case 2:
      return b(`:${Math.floor((next() - 0.5) * 2 ** 40)}\r\n`);
    case 3:
      return b('$-1\r\n');
    case 4: {
      const payload = randomBytes(next, Math.floor(next() * (next() < 0.1 ? 5000 : 40)));
      return Buffer.concat([b(`$${payload.length}\r\n`), payload, b('\r\n')]);
    }
    case 5:
      return b('*-1\r\n');
    case 6:
      return b('*0\r\n');
    default: {
      const count = 1 + Math.floor(next() * 5);
      const elements = Array.from({ length: count }, () => randomReply(next, depth + 1));
      return Buffer.concat([b(`*${count}\r\n`), ...elements]);
    }
  }
}

function feed(framer: ReplyFramer, chunks: Buffer[]): Buffer[] {
  return chunks.flatMap((chunk) => framer.push(chunk));
}

function expectReplies(actual: Buffer[], expected: Buffer[]): void {
  expect(actual.length).to.equal(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!actual[i]!.equals(expected[i]!)) {
      expect.fail(`reply ${i}: ${JSON.stringify(actual[i]!.toString('latin1'))} != ${JSON.stringify(expected[i]!.toString('latin1'))}`);
    }
  }
}

describe('encodeCommand', () => {
  it('encodes an array of bulk strings, exactly', () => {
    expect(encodeCommand(['SET', 'key', 'value']).toString('latin1')).to.equal('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n');
    expect(encodeCommand(['PING']).toString('latin1')).to.equal('*1\r\n$4\r\nPING\r\n');
  });

  it('writes Buffers as they are, strings as UTF-8, empty arguments and long counts', () => {
    const binary = Buffer.from([0, 13, 10, 255, 36]);
    const encoded = encodeCommand(['SET', binary, 'é€', '']);
    expect(encoded.equals(Buffer.concat([b('*4\r\n$3\r\nSET\r\n$5\r\n'), binary, b('\r\n$5\r\n'), Buffer.from('é€', 'utf8'), b('\r\n$0\r\n\r\n')]))).to.equal(true);

    const many = Array.from({ length: 12 }, (_, i) => String(i * 1000));
    expect(encodeCommand(many).toString('latin1')).to.equal(`*12\r\n${many.map((arg) => `$${arg.length}\r\n${arg}\r\n`).join('')}`);

    const big = Buffer.alloc(123456, 7);
    const encodedBig = encodeCommand(['SET', 'k', big]);
    expect(encodedBig.length).to.equal('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$123456\r\n'.length + 123456 + 2);
    expect(encodedBig.subarray(-2).toString('latin1')).to.equal('\r\n');
  });

  it('refuses an empty command', () => {
    expect(() => encodeCommand([])).to.throw(RangeError);
  });
});

describe('decodeCommand', () => {
  it('gives back the arguments encodeCommand was given, binary and empty ones included', () => {
    const argv = [Buffer.from('SET'), Buffer.from([0, 13, 10, 255, 36]), Buffer.alloc(0), Buffer.alloc(70000, 9)];
    const decoded = decodeCommand(encodeCommand(argv));
    expect(decoded.length).to.equal(argv.length);
    decoded.forEach((arg, i) => expect(arg.equals(argv[i] as Buffer), `argument ${i}`).to.equal(true));
  });

  it('refuses what encodeCommand cannot have produced', () => {
    expect(() => decodeCommand(b('+OK\r\n'))).to.throw(RespError);
    expect(() => decodeCommand(b('*2\r\n$3\r\nGET\r\n'))).to.throw(RespError);
    expect(() => decodeCommand(b('*1\r\n$9\r\nGET\r\n'))).to.throw(RespError);
    expect(() => decodeCommand(Buffer.concat([encodeCommand(['PING']), b('x')]))).to.throw(RespError);
  });
});

describe('ReplyFramer', () => {
  const everyType = [
    '+OK\r\n',
    '+\r\n',
    '-ERR unknown command\r\n',
    '-WRONGTYPE Operation against a key holding the wrong kind of value\r\n',
    ':0\r\n',
    ':-42\r\n',
    ':9223372036854775807\r\n',
    '$5\r\nhello\r\n',
    '$0\r\n\r\n',
    '$-1\r\n',
    '*-1\r\n',
    '*0\r\n',
    '*2\r\n$1\r\na\r\n:1\r\n',
    '*3\r\n*2\r\n+x\r\n*-1\r\n$-1\r\n*1\r\n*0\r\n',
    '$9\r\n\r\n$1\r\nx\r\n\r\n',
  ];

  it('frames every reply type, nested arrays included, as its exact bytes', () => {
    const replies = new ReplyFramer().push(b(everyType.join('')));
    expect(replies.map((reply) => reply.toString('latin1'))).to.deep.equal(everyType);
  });

  it('keeps nil bulk and nil array distinct', () => {
    const replies = new ReplyFramer().push(b('$-1\r\n*-1\r\n*2\r\n$-1\r\n*-1\r\n'));
    expect(replies.map((reply) => reply.toString('latin1'))).to.deep.equal(['$-1\r\n', '*-1\r\n', '*2\r\n$-1\r\n*-1\r\n']);
  });

  it('returns a reply that lies within one chunk as a slice of it, not a copy', () => {
    const chunk = b('+OK\r\n$3\r\nabc\r\n');
    const replies = new ReplyFramer().push(chunk);
    expect(replies).to.have.length(2);
    for (const reply of replies) expect(reply.buffer).to.equal(chunk.buffer);
    expect(replies[1]!.byteOffset).to.equal(chunk.byteOffset + 5);
  });

  it('holds a partial reply back until it is complete', () => {
    const framer = new ReplyFramer();
    expect(framer.push(b('*2\r\n$3\r\nfo'))).to.deep.equal([]);
    expect(framer.idle).to.equal(false);
    expect(framer.push(b('o\r\n:'))).to.deep.equal([]);
    const replies = framer.push(b('7\r\n+OK\r'));
    expect(replies.map((reply) => reply.toString('latin1'))).to.deep.equal(['*2\r\n$3\r\nfoo\r\n:7\r\n']);
    expect(framer.push(b('\n')).map((reply) => reply.toString('latin1'))).to.deep.equal(['+OK\r\n']);
    expect(framer.idle).to.equal(true);
  });

  it('gives the same replies for a split at every position of every reply type', () => {
    const all = b(everyType.join(''));
    for (let at = 0; at <= all.length; at++) {
      const replies = feed(new ReplyFramer(), [all.subarray(0, at), all.subarray(at)]);
      expect(replies.map((reply) => reply.toString('latin1')), `split at ${at}`).to.deep.equal(everyType);
    }
  });

  it('byte-at-a-time and random splits of a long mixed sequence equal one-chunk feeding (seed 1)', () => {
    const next = random(1);
    const expected = Array.from({ length: 600 }, () => randomReply(next, 0));
    const all = Buffer.concat(expected);
    expect(all.length).to.be.greaterThan(20000);

    expectReplies(new ReplyFramer().push(all), expected);

    const bytewise = new ReplyFramer();
    const byByte: Buffer[] = [];
    for (let i = 0; i < all.length; i++) byByte.push(...bytewise.push(all.subarray(i, i + 1)));
    expectReplies(byByte, expected);

    for (let trial = 0; trial < 40; trial++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < all.length; ) {
        const size = next() < 0.3 ? 1 + Math.floor(next() * 4) : 1 + Math.floor(next() * 3000);
        // Copy each chunk, as a socket would hand over fresh buffers.
        chunks.push(Buffer.from(all.subarray(at, at + size)));
        at += size;
      }
      expectReplies(feed(new ReplyFramer(), chunks), expected);
    }
  });

  it('frames a 32 MB bulk string fed in 64 KB chunks in linear time, CRLF inside kept', function () {
    const size = 32 * 1024 * 1024;
    const payload = Buffer.alloc(size, 'a');
    for (let at = 1000; at < size; at += 1 << 20) payload.write('\r\n*1\r\n', at, 'latin1');
    const all = Buffer.concat([b(`$${size}\r\n`), payload, b('\r\n+OK\r\n')]);
    const framer = new ReplyFramer();
    const started = Date.now();
    const replies: Buffer[] = [];
    for (let at = 0; at < all.length; at += 65536) replies.push(...framer.push(all.subarray(at, at + 65536)));
    const elapsedMs = Date.now() - started;
    expect(replies).to.have.length(2);
    expect(replies[0]!.length).to.equal(all.length - 5);
    expect(replies[0]!.equals(all.subarray(0, all.length - 5))).to.equal(true);
    expect(replies[1]!.toString('latin1')).to.equal('+OK\r\n');
    // Re-copying the buffered part on every chunk would move ~8 GB here.
    expect(elapsedMs).to.be.lessThan(3000);
  });

  describe('malformed input raises RespError', () => {
    const cases: Array<[string, string, number?]> = [
      ['an unknown type byte', '?x\r\n'],
      ['an unknown type byte after a good reply', '+OK\r\n%1\r\n'],
      ['a negative bulk length other than -1', '$-2\r\n'],
      ['a negative array count other than -1', '*-5\r\n'],
      ['-0 as a length', '$-0\r\n'],
      ['a non-digit length', '$1x\r\nab\r\n'],
      ['a non-digit count', '*abc\r\n'],
      ['an empty length', '$\r\n'],
      ['a plus sign in a length', '$+3\r\nabc\r\n'],
      ['a non-digit integer', ':12a\r\n'],
      ['an empty integer', ':\r\n'],
      ['a line ended by LF alone', '+OK\n'],
      ['a bulk string not followed by CRLF', '$3\r\nabcXY'],
      ['a bulk string followed by CR and no LF', '$3\r\nabc\rX'],
      ['an overlong length line', `$${'1'.repeat(30)}`],
      ['a bulk length beyond the default limit (512 MiB)', `$${512 * 1024 * 1024 + 1}\r\n`],
      ['a bulk length beyond a set limit', '$200\r\n', 100],
      ['an array count beyond a set limit', '*50\r\n', 100],
      ['a reply that grows beyond a set limit', `*30\r\n${'+abcdefgh\r\n'.repeat(30)}`, 100],
      ['a simple string beyond a set limit', `+${'x'.repeat(200)}`, 100],
    ];
    for (const [what, input, limit] of cases) {
      it(`${what}: in one chunk and byte by byte`, () => {
        expect(() => new ReplyFramer(limit).push(b(input)), what).to.throw(RespError);
        const framer = new ReplyFramer(limit);
        expect(() => {
          for (let i = 0; i < input.length; i++) framer.push(b(input).subarray(i, i + 1));
        }, what).to.throw(RespError);
      });
    }

    it('and keeps raising it on later pushes', () => {
      const framer = new ReplyFramer();
      expect(() => framer.push(b('$-3\r\n'))).to.throw(RespError, /negative length/);
      expect(() => framer.push(b('+OK\r\n'))).to.throw(RespError, /negative length/);
    });

    it('accepts a reply of exactly the limit', () => {
      const reply = b('$5\r\nhello\r\n');
      expect(new ReplyFramer(reply.length).push(reply)).to.have.length(1);
      expect(() => new ReplyFramer(reply.length - 1).push(reply)).to.throw(RespError);
    });
  });
});
