// memcached compatibility: the same scripts sent as raw bytes to a plain memcached and,
// through the proxy, to a three-replica cluster's leader; the replies must be identical
// (CAS values masked: they count every store a server ever made). Then real clients: the
// `memcached` npm package (text protocol), memjs (binary protocol: refused with a clear
// error) and memcslap from libmemcached-tools. After each test every replica's memcached
// holds the same items.
import { spawn } from 'node:child_process';

import { expect } from 'chai';
import Memcached from 'memcached';
import memjs from 'memjs';

import { MemcachedServerProcess } from '../adapters/memcached/memcached_server_process.js';
import { MemcachedCluster } from '../proxy/testing/memcached_cluster.js';
import { rawExchange } from '../proxy/testing/raw_exchange.js';

const MEMCSLAP = '/usr/bin/memcslap';

// Sends the requests one after another on one connection (each given time to be answered)
// and resolves with the bytes received, CAS values masked.
async function run(port: number, requests: string[], pauseMs = 15): Promise<string> {
  const { received } = await rawExchange(port, requests.map((request) => Buffer.from(request, 'latin1')), pauseMs, 50);
  return received.toString('latin1').replace(/^(VALUE \S+ \d+ \d+) \d+\r\n/gm, '$1 <cas>\r\n');
}

async function expectReplicasAgree(cluster: MemcachedCluster): Promise<void> {
  const contents = await cluster.contents();
  expect(new Set(contents).size, contents.join('\n---\n')).to.equal(1);
}

describe('compat: memcached (plain memcached vs the proxy leader, raw bytes; real clients)', function () {
  this.timeout(60000);
  let plain: MemcachedServerProcess;
  let cluster: MemcachedCluster;
  let port: number;

  before(async () => {
    plain = await MemcachedServerProcess.start();
    cluster = await MemcachedCluster.start();
    port = cluster.proxyPorts[await cluster.leader()] as number;
  });
  after(async () => {
    await cluster?.stop();
    await plain?.stop();
  });

  // `ttlTolerant`: remaining TTLs (meta's t flag) may differ by a second: memcached's own
  // clock ticks once a second, and the proxy made the expiration absolute.
  const compare = async (requests: string[], ttlTolerant = false) => {
    const expected = await run(plain.port, ['flush_all\r\n', ...requests]);
    const actual = await run(port, ['flush_all\r\n', ...requests]);
    if (ttlTolerant) {
      const ttls = (text: string) => [...text.matchAll(/ t(\d+)/g)].map((match) => Number(match[1]));
      const [plainTtls, proxyTtls] = [ttls(expected), ttls(actual)];
      expect(proxyTtls.length).to.equal(plainTtls.length);
      proxyTtls.forEach((ttl, i) => expect(Math.abs(ttl - (plainTtls[i] as number)), `ttl #${i}`).to.be.at.most(2));
      const mask = (text: string) => text.replace(/ t(\d+)/g, ' t<ttl>');
      expect(mask(actual)).to.equal(mask(expected));
    } else {
      expect(actual).to.equal(expected);
    }
    await expectReplicasAgree(cluster);
    return expected;
  };

  it('storage and retrieval: set, add, replace, append, prepend, cas, get, gets, multi-get, gat, gats, delete, touch', async () => {
    const replies = await compare([
      'set a 1 0 3\r\none\r\n', 'set b 4294967295 0 0\r\n\r\n', 'add a 0 0 1\r\nx\r\n', 'add c 2 0 1\r\nc\r\n',
      'replace a 3 0 3\r\nONE\r\n', 'replace missing 0 0 1\r\nx\r\n', 'append a 0 0 2\r\n++\r\n', 'prepend a 0 0 2\r\n--\r\n',
      'append missing 0 0 1\r\nx\r\n', 'get a b c missing\r\n', 'gets a\r\n', 'cas a 0 0 1 1\r\nz\r\n', 'cas missing 0 0 1 1\r\nz\r\n',
      'gat 100 a c\r\n', 'gats 0 b\r\n', 'touch a 50\r\n', 'touch missing 50\r\n', 'delete c\r\n', 'delete c\r\n', 'get c\r\n',
      'set k 0 0 5\r\na\r\nb\r\r\n', 'get k\r\n',
    ]);
    expect(replies).to.include('VALUE a 3 7\r\n--ONE++\r\n');
  });

  it('counters: incr, decr, wrap-around, floors at zero, non-numeric values, huge deltas', async () => {
    await compare([
      'set n 0 0 2\r\n10\r\n', 'incr n 5\r\n', 'decr n 100\r\n', 'incr n 18446744073709551615\r\n', 'incr n 1\r\n',
      'set m 0 0 20\r\n18446744073709551615\r\n', 'incr m 1\r\n', 'incr missing 1\r\n', 'set s 0 0 3\r\nabc\r\n', 'incr s 1\r\n',
      'incr n -1\r\n', 'incr n 18446744073709551616\r\n', 'decr n 0\r\n', 'get n m\r\n',
    ]);
  });

  it('noreply on every write, then the values they left', async () => {
    await compare([
      'set a 0 0 1 noreply\r\n1\r\n', 'add a 0 0 1 noreply\r\n2\r\n', 'append a 0 0 1 noreply\r\n3\r\n', 'incr a 5 noreply\r\n',
      'set d 0 0 1 noreply\r\nx\r\n', 'delete d noreply\r\n', 'touch a 10 noreply\r\n', 'incr missing 1 noreply\r\n', 'get a d\r\n',
    ]);
  });

  it("bad input gets memcached's own replies, and the connection goes on", async () => {
    await compare([
      'bogus\r\n', 'GET a\r\n', 'set\r\n', 'set k 0 0\r\n', 'set k x 0 1\r\n', 'set k 0 0 -1\r\n', 'set k 0 0 2\r\nabc\r\n',
      `get ${'k'.repeat(251)}\r\n`, `set ${'k'.repeat(250)} 0 0 1\r\nv\r\n`, `get ${'k'.repeat(250)}\r\n`, 'incr a abc\r\n',
      'delete a 5\r\n', 'touch a abc\r\n', 'gat abc a\r\n', 'flush_all abc\r\n', 'verbosity\r\n', 'cas k 0 0 1 abc\r\n', '\r\n', 'get a\r\n',
    ]);
  });

  it('values: every byte value, CRLF inside, 500 KB, and one over the item size (refused, the old value dropped)', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1');
    const large = 'L'.repeat(500_000);
    const over = 'O'.repeat(1024 * 1024 + 10);
    await compare([
      `set bin 0 0 256\r\n${bytes}\r\n`, 'get bin\r\n', `set large 0 0 ${large.length}\r\n${large}\r\n`, 'get large\r\n',
      'set old 0 0 3\r\nold\r\n', `set old 0 0 ${over.length}\r\n${over}\r\n`, 'get old\r\n', `add new 0 0 ${over.length}\r\n${over}\r\n`, 'get new\r\n',
    ]);
  });

  it('the meta protocol: ms, mg, md, ma with their flags, the quiet flag, mn, and their errors', async () => {
    const replies = await compare([
      'ms m1 2 T0 F5\r\nhi\r\n', 'mg m1 v f t s k O77\r\n', 'mg missing v\r\n', 'mg missing v q\r\n', 'mg m1 v q\r\n',
      'ms m1 2 q\r\nyo\r\n', 'ms m1 2 ME\r\nno\r\n', 'ms m1 1 MA\r\n!\r\n', 'ms m1 1 MP\r\n<\r\n', 'mg m1 v\r\n',
      'ms absent 1 MR\r\nx\r\n', 'md m1 q\r\n', 'md m1 q\r\n', 'md m1\r\n',
      'ma c1 N0 J5 v\r\n', 'ma c1 v\r\n', 'ma c1 MD D3 v\r\n', 'ma c1 q\r\n', 'ma nocount\r\n', 'mg c1 v\r\n',
      'mg n1 N30 v t\r\n', 'mg m2 T100 v\r\n', 'ms m2 1 T1000\r\nx\r\n', 'mg m2 t v\r\n', 'mn\r\n',
      'ms m3 x\r\n', 'ms m3 2 Z\r\nhi\r\n', 'ms m3 2 MZ\r\nhi\r\n', 'ms m3 2 T\r\nhi\r\n', 'mg m3 Z\r\n', 'mg\r\n', 'ms\r\n',
      `ms ${'k'.repeat(251)} 2\r\nhi\r\n`, 'mg m3 v\r\n',
    ], true);
    expect(replies).to.include('VA 2 f5 t-1 s2 km1 O77\r\nhi\r\n');
  });

  it('storage lines framed as memcached frames them: token counts, numbers as strtol reads them, a NUL, noreply on refusals', async () => {
    await compare([
      'set k 0 0 1 a b\r\nx\r\n', 'cas k 0 0 1 1 a b\r\nx\r\n', 'set k 0 0 1 junk\r\nj\r\n', 'get k\r\n',
      'set k x 0 1 noreply\r\n', `set ${'k'.repeat(251)} 0 0 1 noreply\r\n`, 'set k 0 0 -1 noreply\r\n', 'cas k 0 0 1 x noreply\r\n',
      'set k 0 0 00000000001\r\ny\r\n', 'get k\r\n', 'set k 0 0 4294967297\r\nz\r\n', 'get k\r\n',
      'set k 4294967301 0 1\r\nf\r\n', 'get k\r\n', 'set k 0 0 1\0 junk more\r\nw\r\n', 'get k\r\n',
      'set k 0 0 1 noreply\r\nn\r\n', 'get k\r\n',
      'set k 0 0 2147483646\r\n', // last: memcached reads the rest of the connection away as its data
    ]);
  });

  it('ms framed as memcached frames it: 20 tokens or more, a long base64 key, no length, lengths as strtol reads them', async () => {
    await compare([
      'ms k 2 a b c d e f g h i j k l m n o p r\r\nhi\r\n', 'ms k 2 a b c d e f g h i j k l m n o p\r\nhi\r\n',
      `ms ${'a'.repeat(300)} 2 b\r\nhi\r\n`, 'ms k\r\n', 'ms k +2\r\nhi\r\n', 'mg k v\r\n', 'ms k 4294967298\r\nho\r\n', 'mg k v\r\n',
      'ms k 2147483647\r\nhi\r\n', 'ms k -1\r\nhi\r\n', 'mn\r\n', 'mg k v\r\n',
    ]);
  });

  it('noreply only where memcached honours it: a key named noreply, and token counts that make it an error', async () => {
    await compare([
      'set noreply 0 0 1\r\nx\r\n', 'get noreply\r\n', 'gets noreply\r\n', 'gat 0 noreply\r\n', 'gats 0 noreply\r\n', 'stats noreply\r\n',
      'set n 0 0 1\r\n1\r\n', 'touch n 10 x noreply\r\n', 'incr n 1 x noreply\r\n', 'delete noreply\r\n', 'get noreply n\r\n',
    ]);
  });

  it("the quiet flag hides what memcached hides: ma's success but not its creation, a flag that only starts with q", async () => {
    await compare([
      'ma c N0 J5 q\r\n', 'ma c q v\r\n', 'ma c q\r\n', 'ma c N0 J9 q v\r\n', 'ma d N0 J7 q v\r\n', 'mg c v\r\n',
      'mg missing v qx\r\n', 'md missing quiet\r\n', 'ms c 1 qq\r\nx\r\n', 'mn\r\n', 'mg c v\r\n',
    ]);
  });

  it("stats' other forms (reset, detail) answer as memcached's, and the leader goes on", async () => {
    await compare(['stats reset\r\n', 'stats detail on\r\n', 'stats detail\r\n', 'stats detail off\r\n', 'stats bogus\r\n', 'set a 0 0 1\r\nx\r\n', 'get a\r\n']);
  });

  it('an oversize ms drops the old value in every mode, its base64 key decoded', async () => {
    const over = 'O'.repeat(1024 * 1024 + 10);
    await compare([
      'ms k1 3 T0\r\nold\r\n', `ms k1 ${over.length} ME\r\n${over}\r\n`, 'mg k1 v\r\n',
      'ms k2 3 T0\r\nold\r\n', `ms k2 ${over.length} MA q\r\n${over}\r\n`, 'mg k2 v\r\n',
      'ms Zm9v 3 b T0\r\nold\r\n', `ms Zm9v ${over.length} b\r\n${over}\r\n`, 'mg foo v\r\n',
    ]);
  });

  it('flush_all empties every replica', async () => {
    await compare(['set a 0 0 1\r\n1\r\n', 'set b 0 0 1\r\n2\r\n', 'flush_all\r\n', 'get a b\r\n', 'set c 0 0 1\r\n3\r\n', 'get c\r\n']);
  });

  it('the memcached npm package (text protocol): set, get, gets/cas, incr, del, touch', async () => {
    const client = new Memcached(`127.0.0.1:${port}`, { retries: 0, timeout: 2000 });
    const call = <T>(fn: (done: (error: unknown, result: T) => void) => void) =>
      new Promise<T>((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result))));
    try {
      expect(await call<boolean>((done) => client.set('npm:k', 'value', 0, done))).to.equal(true);
      expect(await call<unknown>((done) => client.get('npm:k', done))).to.equal('value');
      const gets = await call<{ cas: string }>((done) => client.gets('npm:k', done as (error: unknown, result: { cas: string }) => void));
      expect(await call<boolean>((done) => client.cas('npm:k', 'next', gets.cas, 0, done))).to.equal(true);
      expect(await call<boolean>((done) => client.cas('npm:k', 'stale', gets.cas, 0, done))).to.equal(false);
      expect(await call<boolean>((done) => client.set('npm:n', 5, 0, done))).to.equal(true);
      expect(await call<number | boolean>((done) => client.incr('npm:n', 3, done))).to.equal(8);
      await new Promise<void>((resolve, reject) => client.touch('npm:n', 100, (error: unknown) => (error ? reject(error) : resolve())));
      await new Promise<void>((resolve, reject) => client.del('npm:k', (error: unknown) => (error ? reject(error) : resolve())));
      expect(await call<unknown>((done) => client.getMulti(['npm:k', 'npm:n'], done))).to.deep.equal({ 'npm:n': 8 });
    } finally {
      client.end();
    }
    await expectReplicasAgree(cluster);
  });

  it('the memcached npm package given all three replicas: keys spread over them by the client, followers hand them to the leader', async () => {
    const servers = cluster.proxyPorts.map((proxyPort) => `127.0.0.1:${proxyPort}`);
    const client = new Memcached(servers, { retries: 0, timeout: 2000 });
    const call = <T>(fn: (done: (error: unknown, result: T) => void) => void) =>
      new Promise<T>((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result))));
    try {
      for (let i = 0; i < 60; i++) expect(await call<boolean>((done) => client.set(`spread:${i}`, `v${i}`, 0, done))).to.equal(true);
      const values = await call<Record<string, string>>((done) => client.getMulti(Array.from({ length: 60 }, (_, i) => `spread:${i}`), done as (error: unknown, result: Record<string, string>) => void));
      expect(Object.keys(values)).to.have.length(60);
      expect(values['spread:42']).to.equal('v42');
    } finally {
      client.end();
    }
    await expectReplicasAgree(cluster);
    const contents = await cluster.contents();
    expect(contents[0]?.split('\n').filter((item) => item.startsWith('spread:'))).to.have.length(60);
  });

  it('memjs (binary protocol) gets a clear error, not a hang', async () => {
    const client = memjs.Client.create(`127.0.0.1:${port}`, { retries: 0, timeout: 2, conntimeout: 2, logger: { log: () => {} } });
    try {
      const failure = await client.set('memjs:k', 'v', {}).then(
        () => undefined,
        (error: Error) => error,
      );
      // memjs names the status (0x0083, not supported); the body says why, for clients that show it.
      expect(failure?.message).to.match(/Not supported/);
    } finally {
      client.close();
    }
  });

  it('memcslap (libmemcached): set and get loads complete against the proxy', async () => {
    for (const test of ['set', 'get']) {
      const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
        const child = spawn(MEMCSLAP, [`--servers=127.0.0.1:${port}`, '--concurrency=4', '--execute-number=500', `--test=${test}`], { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
        child.once('error', reject);
        child.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, text });
        });
      });
      expect(output.code, output.text).to.equal(0);
      expect(output.text).to.match(new RegExp(`Time to ${test}\\s+\\d+ keys by\\s+4 threads`));
    }
    await expectReplicasAgree(cluster);
  });
});
