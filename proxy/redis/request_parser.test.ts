import { expect } from 'chai';

import { ProtocolError, RequestParser, splitArgs } from './request_parser.js';

const strings = (requests: Buffer[][]) => requests.map((argv) => argv.map((arg) => arg.toString('latin1')));

describe('RequestParser (client requests as redis-server parses them)', () => {
  it('parses multibulk requests, several per chunk and split anywhere', () => {
    const wire = Buffer.from('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n');
    expect(strings(new RequestParser().push(wire))).to.deep.equal([['GET', 'k'], ['SET', 'k', 'a\r\nb']]);
    for (let cut = 1; cut < wire.length; cut++) {
      const parser = new RequestParser();
      const requests = [...parser.push(wire.subarray(0, cut)), ...parser.push(wire.subarray(cut))];
      expect(strings(requests), `cut at ${cut}`).to.deep.equal([['GET', 'k'], ['SET', 'k', 'a\r\nb']]);
      expect(parser.bufferedBytes).to.equal(0);
    }
  });

  it('parses inline commands with quotes and escapes, and ignores empty lines and empty requests', () => {
    const parser = new RequestParser();
    const requests = parser.push(Buffer.from('PING\r\n\r\nset "a b" \'c\\\'d\' "\\x41\\n"\n*0\r\n*-1\r\nECHO x\r\n'));
    expect(strings(requests)).to.deep.equal([['PING'], ['set', 'a b', "c'd", 'A\n'], ['ECHO', 'x']]);
  });

  it("refuses what Redis refuses, with Redis' messages", () => {
    const cases: Array<[string, string]> = [
      ['*2\r\n$4\r\nECHO\r\n$0:\r\n', 'invalid bulk length'],
      ['*1\r\n$abc\r\n', 'invalid bulk length'],
      ['*1\r\n$-2\r\n', 'invalid bulk length'],
      ['*1\r\n:5\r\n', "expected '$', got ':'"],
      ['*x\r\n', 'invalid multibulk length'],
      ['*1048577\r\n', 'invalid multibulk length'],
      ['*01\r\n', 'invalid multibulk length'],
      ['*+1\r\n', 'invalid multibulk length'],
      ['*1\r\n$03\r\nfoo\r\n', 'invalid bulk length'],
      ['*1\r\n$3\rx\nfoo\r\n', 'invalid bulk length'],
      ['*1\r\n$9223372036854775808\r\n', 'invalid bulk length'],
      ['*1\r\n$1234567890123456\r\n', 'invalid bulk length'],
      ['set "a\r\n', 'unbalanced quotes in request'],
      ['set "a"b\r\n', 'unbalanced quotes in request'],
    ];
    const errorOf = (parser: RequestParser, input: Buffer) => {
      parser.push(input);
      return parser.error;
    };
    for (const [input, message] of cases) {
      const error = errorOf(new RequestParser(), Buffer.from(input));
      expect(error, input).to.be.instanceOf(ProtocolError);
      expect(error?.message, input).to.equal(message);
    }
    expect(errorOf(new RequestParser(10), Buffer.from('*1\r\n$11\r\n'))?.message).to.equal('invalid bulk length');
    expect(errorOf(new RequestParser(), Buffer.alloc(70 * 1024, 0x61))?.message).to.equal('too big inline request');
    // The requests before the malformed bytes still count, as in Redis.
    const parser = new RequestParser();
    expect(strings(parser.push(Buffer.from('*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n')))).to.deep.equal([['PING']]);
    expect(parser.error?.message).to.equal('invalid bulk length');
    expect(parser.push(Buffer.from('*1\r\n$4\r\nPING\r\n'))).to.deep.equal([]);
  });

  it('reads lengths in every form Redis takes: CRLF or a bare LF, 0, up to 15 digits in the fast path and beyond it', () => {
    expect(strings(new RequestParser().push(Buffer.from("*2\n$4\nECHO\r\n$0\n\r\n")))).to.deep.equal([['ECHO', '']]);
    expect(strings(new RequestParser().push(Buffer.from('*1\r\n$0\r\n\r\n')))).to.deep.equal([['']]);
    const long = 'x'.repeat(123456);
    expect(strings(new RequestParser().push(Buffer.from(`*2\r\n$4\r\nECHO\r\n$${long.length}\r\n${long}\r\n`)))).to.deep.equal([['ECHO', long]]);
    // Within the limit but longer than the fast path's 15 digits: waits for the bytes.
    const parser = new RequestParser(Number.MAX_SAFE_INTEGER);
    expect(parser.push(Buffer.from('*1\r\n$1000000000000000\r\nabc'))).to.deep.equal([]);
    expect(parser.error).to.equal(undefined);
    // A length split across chunks, digit by digit.
    const split = new RequestParser();
    const bytes = Buffer.from('*1\r\n$12\r\nhello world!\r\n');
    const out: Buffer[][] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...split.push(bytes.subarray(i, i + 1)));
    expect(strings(out)).to.deep.equal([['hello world!']]);
  });

  it('waits for a request that is not complete yet', () => {
    const parser = new RequestParser();
    expect(parser.push(Buffer.from('*1\r\n$5\r\nhel'))).to.deep.equal([]);
    expect(parser.bufferedBytes).to.equal(11);
    expect(strings(parser.push(Buffer.from('lo\r\n')))).to.deep.equal([['hello']]);
  });

  it('splits arguments like sdssplitargs', () => {
    expect(splitArgs(Buffer.from('  a  "b c"  '))?.map(String)).to.deep.equal(['a', 'b c']);
    expect(splitArgs(Buffer.from('"unterminated'))).to.equal(undefined);
    expect(splitArgs(Buffer.from("'it\\'s'"))?.map(String)).to.deep.equal(["it's"]);
  });
});
