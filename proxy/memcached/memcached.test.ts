// The memcached front end end to end, in one process: three real memcached servers behind
// three replicas over shm. Replies are compared as raw bytes.
import net from 'node:net';

import { expect } from 'chai';

import { MemcachedCluster } from '../testing/memcached_cluster.js';

// Sends each request (waiting `pauseMs` after it) on one connection; resolves with all
// bytes received.
async function exchange(port: number, requests: string[], pauseMs = 30): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  for (const request of requests) {
    socket.write(request);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  socket.destroy();
  return received;
}

describe('memcached front end (three replicas, shm, real memcached servers)', function () {
  this.timeout(60000);
  let cluster: MemcachedCluster;
  let leader: number;
  let port: number;

  before(async () => {
    cluster = await MemcachedCluster.start();
    leader = await cluster.leader();
    port = cluster.proxyPorts[leader] as number;
  });
  after(async () => {
    await cluster?.stop();
  });

  it('replicates every kind of write to every memcached, with the same CAS everywhere', async () => {
    const replies = await exchange(port, [
      'set a 5 0 3\r\none\r\n',
      'add a 0 0 1\r\nx\r\n',
      'add b 0 0 1\r\n7\r\n',
      'incr b 10\r\n',
      'decr b 3\r\n',
      'append a 0 0 4\r\n-two\r\n',
      'prepend a 0 0 5\r\nzero-\r\n',
      'replace missing 0 0 1\r\nx\r\n',
      'gets a b\r\n',
      'delete nothing\r\n',
      'touch b 100\r\n',
    ]);
    expect(replies).to.match(
      /^STORED\r\nNOT_STORED\r\nSTORED\r\n17\r\n14\r\nSTORED\r\nSTORED\r\nNOT_STORED\r\nVALUE a 5 12 \d+\r\nzero-one-two\r\nVALUE b 0 2 \d+\r\n14\r\nEND\r\nNOT_FOUND\r\nTOUCHED\r\n$/,
    );
    const contents = await cluster.contents();
    expect(new Set(contents).size, contents.join('\n---\n')).to.equal(1);
    expect(contents[0]).to.include('a exp=-1 VALUE a 5 12');
    // A cas with the CAS a client saw succeeds, as it would on every replica.
    const cas = /VALUE a 5 12 (\d+)/.exec(replies)?.[1] as string;
    expect(await exchange(port, [`cas a 0 0 1 ${cas}\r\nA\r\n`, `cas a 0 0 1 ${cas}\r\nB\r\n`, 'get a\r\n'])).to.equal('STORED\r\nEXISTS\r\nVALUE a 0 1\r\nA\r\nEND\r\n');
    const after = await cluster.contents();
    expect(new Set(after).size).to.equal(1);
  });

  it('makes relative expirations absolute, so every memcached expires an item at the same time', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await exchange(port, ['set ttl 0 1000 1\r\nx\r\n', 'touch b 2000\r\n'])).to.equal('STORED\r\nTOUCHED\r\n');
    const contents = await cluster.contents();
    expect(new Set(contents).size).to.equal(1);
    const exp = Number(/ttl exp=(\d+)/.exec(contents[0] as string)?.[1]);
    expect(exp).to.be.within(now + 998, now + 1002);
  });

  it('honours noreply: nothing comes back, the writes are applied in order', async () => {
    const replies = await exchange(port, ['set nr 0 0 1 noreply\r\n1\r\n', 'incr nr 5 noreply\r\n', 'incr nr abc noreply\r\n', 'get nr\r\n']);
    expect(replies).to.equal('VALUE nr 0 1\r\n6\r\nEND\r\n');
  });

  it("answers bad input with memcached's errors and keeps the connection", async () => {
    const replies = await exchange(port, [
      'bogus\r\n',
      'set k x 0 1\r\n',
      'set k 0 0 2\r\nabc\r\n',
      'get ' + 'a'.repeat(251) + '\r\n',
      'incr k abc\r\n',
      'shutdown\r\n',
      'mg never-set v\r\n',
      'version\r\n',
    ]);
    expect(replies, JSON.stringify(replies)).to.match(
      /^ERROR\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR mu-proxy: 'shutdown' is not allowed.*\r\nEN\r\nVERSION 1\.6\.\d+\r\n$/,
    );
  });

  it('refuses an oversize value as memcached does, and drops the old value of a set', async () => {
    const big = 'x'.repeat(2 * 1024 * 1024);
    const replies = await exchange(port, ['set old 0 0 1\r\nv\r\n', `set old 0 0 ${big.length}\r\n${big}\r\n`, 'get old\r\n'], 100);
    expect(replies).to.equal('STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n');
    const contents = await cluster.contents();
    expect(new Set(contents).size).to.equal(1);
    expect(contents[0]).to.not.include('old exp');
  });

  it("hands a follower's client to the leader (writes, reads, noreply, errors in order); stats gains the proxy lines", async () => {
    const follower = cluster.proxyPorts[(leader + 1) % 3] as number;
    const replies = await exchange(follower, ['version\r\n', 'set f 0 0 1\r\nx\r\n', 'get f\r\n', 'incr f 1 noreply\r\n', 'bogus\r\n', 'ms fm 2 T0\r\nhi\r\n', 'mg fm v\r\n', 'mn\r\n']);
    expect(replies).to.match(/^VERSION 1\.6\.\d+\r\nSTORED\r\nVALUE f 0 1\r\nx\r\nEND\r\nERROR\r\nHD\r\nVA 2\r\nhi\r\nMN\r\n$/);
    const contents = await cluster.contents();
    expect(new Set(contents).size).to.equal(1);
    expect(contents[0]).to.include('fm exp=-1');
    const stats = await exchange(port, ['stats\r\n']);
    expect(stats).to.match(/STAT pid \d+\r\n/);
    expect(stats).to.include(`STAT mu_node_id ${leader}\r\nSTAT mu_role leader\r\n`);
    expect(stats.endsWith('END\r\n')).to.equal(true);
    // A greeting without a token of the cluster secret is refused.
    expect(await exchange(port, [`mu_forwarded 1 memcached ${Date.now()} ${'f'.repeat(64)}\r\n`])).to.equal(
      'CLIENT_ERROR mu-proxy: refused mu_forwarded (a token not made with the cluster secret)\r\n',
    );
  });

  it('answers a binary-protocol request with a binary error, then closes', async () => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await new Promise((resolve) => socket.once('connect', resolve));
    const header = Buffer.alloc(24);
    header[0] = 0x80;
    header.writeUInt32BE(0x01020304, 12);
    socket.write(header);
    await new Promise((resolve) => socket.once('close', resolve));
    const answer = Buffer.concat(chunks);
    expect(answer[0]).to.equal(0x81);
    expect(answer.readUInt16BE(6)).to.equal(0x0083);
    expect(answer.readUInt32BE(12)).to.equal(0x01020304);
    expect(answer.subarray(24).toString()).to.match(/binary protocol is not supported/);
  });
});

describe('memcached front end with followerRequests "redirect"', function () {
  this.timeout(60000);
  let cluster: MemcachedCluster;

  before(async () => {
    cluster = await MemcachedCluster.start({ memcached: { followerRequests: 'redirect' } });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a follower refuses writes and linearizable reads, naming the leader, and serves the rest', async () => {
    const leader = await cluster.leader();
    const follower = cluster.proxyPorts[(leader + 1) % 3] as number;
    const replies = await exchange(follower, ['set f 0 0 1\r\nx\r\n', 'get f\r\n', 'version\r\n']);
    expect(replies).to.match(/^SERVER_ERROR mu-proxy: this replica does not lead; the leader is replica \d at 127\.0\.0\.1:\d+\r\nSERVER_ERROR [^\r]*\r\nVERSION /);
  });
});
