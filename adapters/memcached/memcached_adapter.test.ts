// The memcached adapter: the text-protocol reply framer on hand-made bytes split anywhere,
// and a real memcached answering pipelined requests of every shape.
import { expect } from 'chai';

import { MemcachedBackend } from './memcached_backend.js';
import { MemcachedProtocolError, MemcachedReplyFramer, type ReplyShape } from './memcached_protocol.js';
import { MemcachedServerProcess } from './memcached_server_process.js';

const b = (text: string) => Buffer.from(text, 'latin1');

describe('MemcachedReplyFramer', () => {
  const replies: Array<[ReplyShape, string]> = [
    ['line', 'STORED\r\n'],
    ['values', 'VALUE k 5 3 17\r\na\r\n\r\nVALUE k2 0 0\r\n\r\nEND\r\n'],
    ['values', 'END\r\n'],
    ['values', 'CLIENT_ERROR bad command line format\r\n'],
    ['stats', 'STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n'],
    ['meta', 'VA 5 f5\r\nEND\r\n\r\n'],
    ['meta', 'HD\r\n'],
    ['line', '12\r\n'],
    ['quiet', 'MN\r\n'],
    ['quiet', 'VA 2 t5\r\nMN\r\nMN\r\n'],
    ['quiet', 'NF\r\nMN\r\n'],
    ['listing', 'key=a exp=-1 la=1 cas=2 fetch=no cls=1 size=60\nEND\r\n'],
    ['listing', 'BUSY currently processing crawler request\r\n'],
  ];
  const all = replies.map(([, text]) => text).join('');

  it('frames each reply by the shape its request expects, however the bytes are split', () => {
    for (let split = 1; split < all.length; split += 7) {
      const framer = new MemcachedReplyFramer();
      for (const [shape] of replies) framer.expect(shape);
      const out: string[] = [];
      for (let at = 0; at < all.length; at += split) out.push(...framer.push(b(all.slice(at, at + split))).map((reply) => reply.toString('latin1')));
      expect(out, `split ${split}`).to.deep.equal(replies.map(([, text]) => text));
    }
  });

  it('refuses bytes no request expects, a data block without its CRLF, and an unexpected line', () => {
    const stray = new MemcachedReplyFramer();
    expect(() => stray.push(b('STORED\r\n'))).to.throw(MemcachedProtocolError);
    const chunk = new MemcachedReplyFramer();
    chunk.expect('values');
    expect(() => chunk.push(b('VALUE k 0 2\r\nabXY'))).to.throw(MemcachedProtocolError);
    expect(() => chunk.push(b('END\r\n'))).to.throw(MemcachedProtocolError); // and stays failed
    const odd = new MemcachedReplyFramer();
    odd.expect('values');
    expect(() => odd.push(b('STORED\r\n'))).to.throw(MemcachedProtocolError);
  });
});

describe('MemcachedBackend against a real memcached', function () {
  this.timeout(20000);
  let server: MemcachedServerProcess;
  let backend: MemcachedBackend;

  before(async () => {
    server = await MemcachedServerProcess.start();
    backend = await MemcachedBackend.connect({ port: server.port });
  });
  after(async () => {
    await backend?.close();
    await server?.stop();
  });

  it('answers pipelined requests of every shape, in order, byte for byte', async () => {
    const big = 'x'.repeat(300_000);
    const replies = (
      await backend.sendMany([
        { request: b(`set big 7 0 ${big.length}\r\n${big}\r\n`), shape: 'line' },
        { request: b('set small 0 0 2\r\nhi\r\n'), shape: 'line' },
        { request: b('get big small missing\r\n'), shape: 'values' },
        { request: b('incr small 1\r\n'), shape: 'line' },
        { request: b('mg small v f\r\n'), shape: 'meta' },
        { request: b('mn\r\n'), shape: 'meta' },
        { request: b('bogus\r\n'), shape: 'line' },
        { request: b('version\r\n'), shape: 'line' },
        { request: b('mg missing v q\r\nmn\r\n'), shape: 'quiet' },
        { request: b('mg small v q\r\nmn\r\n'), shape: 'quiet' },
      ])
    ).map((reply) => reply.toString('latin1'));
    expect(replies[0]).to.equal('STORED\r\n');
    expect(replies[2]).to.equal(`VALUE big 7 ${big.length}\r\n${big}\r\nVALUE small 0 2\r\nhi\r\nEND\r\n`);
    expect(replies[3]).to.equal('CLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
    expect(replies[4]).to.equal('VA 2 f0\r\nhi\r\n');
    expect(replies.slice(5, 7)).to.deep.equal(['MN\r\n', 'ERROR\r\n']);
    expect(replies[7]).to.match(/^VERSION 1\.6\.\d+\r\n$/);
    expect(replies.slice(8)).to.deep.equal(['MN\r\n', 'VA 2\r\nhi\r\nMN\r\n']);
    const stats = (await backend.send(b('stats\r\n'), 'stats')).toString('latin1');
    expect(stats).to.include(`STAT pid ${server.pid}\r\n`);
  });
});
