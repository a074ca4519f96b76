// memcached's text protocol framed as memcached frames it: lines, data blocks, the lines
// it refuses without reading data, oversize blocks read away, binary requests recognised.
import { expect } from 'chai';

import { absoluteExptime } from './determinism.js';
import { RequestParser, RequestParserError, type MemcachedRequest } from './request_parser.js';

const b = (text: string) => Buffer.from(text, 'latin1');

function parseAll(text: string, split = text.length, maxBlockBytes = 1024): MemcachedRequest[] {
  const parser = new RequestParser(maxBlockBytes);
  const out: MemcachedRequest[] = [];
  for (let at = 0; at < text.length; at += split) out.push(...parser.push(b(text.slice(at, at + split))));
  return out;
}

describe('memcached request parser', () => {
  it('frames lines and storage data blocks, however the bytes are split', () => {
    const text = 'set k 5 0 3 noreply\r\nab\n\r\nget a b\nincr  n  1\r\ncas k 0 0 1 42\r\nx\r\n\r\n';
    for (let split = 1; split <= text.length; split++) {
      const requests = parseAll(text, split);
      expect(requests.map((request) => request.kind), `split ${split}`).to.deep.equal(['storage', 'line', 'line', 'storage', 'refused']);
      const set = requests[0] as Extract<MemcachedRequest, { kind: 'storage' }>;
      expect([set.name, set.key.toString(), set.flags, set.exptime, set.bytes, set.noreply, set.block.toString('latin1')]).to.deep.equal(['set', 'k', '5', '0', 3, true, 'ab\n\r\n']);
      const get = requests[1] as Extract<MemcachedRequest, { kind: 'line' }>;
      expect(get.tokens.map((token) => token.toString())).to.deep.equal(['get', 'a', 'b']);
      const incr = requests[2] as Extract<MemcachedRequest, { kind: 'line' }>;
      expect(incr.tokens.map((token) => token.toString())).to.deep.equal(['incr', 'n', '1']);
      expect((requests[3] as Extract<MemcachedRequest, { kind: 'storage' }>).cas).to.equal('42');
      expect(requests[4]).to.deep.equal({ kind: 'refused', reply: 'ERROR', line: Buffer.alloc(0) }); // the empty line
    }
  });

  it('refuses storage lines without reading data, as memcached does', () => {
    const refused = (line: string) => {
      const request = parseAll(`${line}\r\n`)[0];
      if (request?.kind === 'refused') {
        expect(request.line?.toString('latin1')).to.equal(line);
        return { kind: request.kind, reply: request.reply };
      }
      return request;
    };
    expect(refused('set k 0 0')).to.deep.equal({ kind: 'refused', reply: 'ERROR' });
    expect(refused('cas k 0 0 1')).to.deep.equal({ kind: 'refused', reply: 'ERROR' });
    for (const line of ['set k x 0 1', 'set k 0 0 -1', 'set k 0 0 abc', 'set k -1 0 1', 'cas k 0 0 1 abc', `set ${'a'.repeat(251)} 0 0 1`]) {
      expect(refused(line), line).to.deep.equal({ kind: 'refused', reply: 'CLIENT_ERROR bad command line format' });
    }
    // What memcached accepts, so does the parser: signs, leading zeros, extra tokens.
    for (const line of ['set k +5 0 1', 'set k 0 -1 1', 'set k 0 0 01', 'set k 0 0 1 junk']) expect(parseAll(`${line}\r\nx\r\n`)[0]?.kind, line).to.equal('storage');
  });

  it('reads an oversize block away without keeping it', () => {
    const requests = parseAll(`set big 0 0 5000\r\n${'x'.repeat(5000)}\r\nget big\r\n`, 100, 1024);
    expect(requests[0]).to.deep.include({ kind: 'oversize', name: 'set', noreply: false });
    expect(requests[1]?.kind).to.equal('line');
    expect(requests).to.have.length(2);
  });

  it('recognises a binary request, and ends the connection on a line that never ends', () => {
    const parser = new RequestParser(1024);
    const header = Buffer.alloc(24);
    header[0] = 0x80;
    header[1] = 0x00; // get
    header.writeUInt32BE(0xdeadbeef, 12);
    expect(parser.push(header)).to.deep.equal([{ kind: 'binary', opcode: 0, opaque: Buffer.from([0xde, 0xad, 0xbe, 0xef]) }]);
    expect(() => parser.push(b('get k\r\n'))).to.throw(RequestParserError);
    const long = new RequestParser(1024);
    expect(long.push(Buffer.alloc(70 * 1024, 0x61))).to.deep.equal([{ kind: 'refused', reply: 'CLIENT_ERROR line too long' }]);
  });

  it("frames the meta protocol's ms with its data block, and refuses its malformed lines without reading data", () => {
    const requests = parseAll('ms k 2 T10 q\r\nhi\r\nms k x\r\nms\r\nmg k v\r\n', 3);
    expect(requests.map((request) => request.kind)).to.deep.equal(['metaset', 'refused', 'refused', 'line']);
    const set = requests[0] as Extract<MemcachedRequest, { kind: 'metaset' }>;
    expect([set.tokens.map((token) => token.toString()), set.bytes, set.block.toString()]).to.deep.equal([['ms', 'k', '2', 'T10', 'q'], 2, 'hi\r\n']);
    expect(requests[1]).to.deep.include({ kind: 'refused', reply: 'CLIENT_ERROR bad command line format' });
    expect(requests[2]).to.deep.include({ kind: 'refused', reply: 'ERROR' });
    expect(parseAll('ms big 5000 MS\r\n' + 'x'.repeat(5002), 512, 1024)[0]).to.deep.include({ kind: 'oversize', name: 'ms' });
  });

  it('reads numbers as memcached (strtol) does, and refuses what it refuses without reading data', () => {
    const storage = (text: string) => parseAll(text)[0] as Extract<MemcachedRequest, { kind: 'storage' }>;
    // White space and signs strtol takes, leading zeros, and 32-bit truncation.
    expect([storage('set k +7 -0 00000000002\r\nab\r\n').flags, storage('set k 4294967303 0 2\r\nab\r\n').flags]).to.deep.equal(['7', '7']);
    expect(storage('set k 0 0 4294967298\r\nab\r\n').bytes).to.equal(2);
    expect(storage('set k 0 0 2\t\r\nab\r\n').bytes).to.equal(2);
    expect(storage('set k 0 0 1\0 x y\r\na\r\n').bytes).to.equal(1); // a NUL ends the line
    expect(parseAll('set k 0 0 1 a b\r\n')[0]).to.deep.include({ kind: 'refused', reply: 'ERROR' });
    expect(parseAll('set k x 0 1 noreply\r\n')[0]).to.deep.include({ kind: 'refused', noreply: true });
    expect(parseAll('ms k 2 a b c d e f g h i j k l m n o p r\r\n')[0]).to.deep.include({ kind: 'refused', reply: 'CLIENT_ERROR options flags too long' });
    expect(parseAll(`ms ${'a'.repeat(300)} 2 b\r\n`)[0]).to.deep.include({ kind: 'refused', reply: 'CLIENT_ERROR bad command line format' });
    expect(parseAll('ms k 2147483647\r\n')[0]).to.deep.include({ kind: 'refused', reply: 'CLIENT_ERROR bad command line format' });
    // noreply where memcached honours it only.
    const noreply = (text: string) => (parseAll(text)[0] as Extract<MemcachedRequest, { kind: 'line' }>).noreply;
    expect(['get noreply', 'gat 0 noreply', 'delete noreply', 'touch k 1 x noreply', 'incr k 1 noreply', 'flush_all noreply'].map((text) => noreply(`${text}\r\n`))).to.deep.equal([false, false, false, false, true, true]);
  });
});

describe('memcached expirations made absolute', () => {
  it('reads the exptime as memcached does: signs, white space, 32-bit truncation', () => {
    expect(['100', '+100', '0100', '4294967396', '100\t', '0', '-1', '2592001', 'abc'].map((exptime) => absoluteExptime(exptime, 1_000_000_000))).to.deep.equal([
      '1000000100', '1000000100', '1000000100', '1000000100', '1000000100', '0', '-1', '2592001', 'abc',
    ]);
  });
});
