// The memcached front end end to end, in one process: three real memcached servers behind
// three replicas over shm. Replies are compared as raw bytes.
import net from 'node:net';

import { expect } from 'chai';

import { MemcachedCluster } from '../testing/memcached_cluster.js';
import { rawExchange } from '../testing/raw_exchange.js';

// Sends each request (waiting `pauseMs` after it) on one connection; resolves with all
// bytes received.
async function exchange(port: number, requests: string[], pauseMs = 30): Promise<string> {
  return (await rawExchange(port, requests.map((request) => Buffer.from(request)), pauseMs)).received.toString('latin1');
}

// As exchange, with raw bytes; also says whether the proxy ended the connection.
function exchangeBytes(port: number, requests: Buffer[], pauseMs = 30): Promise<{ received: Buffer; closed: boolean }> {
  return rawExchange(port, requests, pauseMs);
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

  it("answers mu_check with a digest entry's index and its digest, and mu_digest with every replica's digest there", async () => {
    const checked = await exchange(port, ['mu_check\r\n']);
    const [, index, digest] = /^DIGEST (\d+) (memcached:[0-9a-f]{40})\r\n$/.exec(checked) ?? [];
    expect(index, checked).to.be.a('string');
    for (const replicaPort of cluster.proxyPorts) {
      let answer = 'PENDING\r\n';
      for (let tries = 0; answer === 'PENDING\r\n' && tries < 100; tries++) answer = await exchange(replicaPort, [`mu_digest ${index}\r\n`], 10);
      expect(answer).to.equal(`DIGEST ${digest}\r\n`);
    }
    expect(await exchange(port, ['mu_digest 1000000000\r\n', 'mu_digest x\r\n', 'mu_digest 1\r\n'])).to.equal(
      'PENDING\r\nCLIENT_ERROR mu-proxy: usage: mu_digest <log index>\r\nCLIENT_ERROR mu-proxy: no digest kept for index 1 (not a digest entry, or too old)\r\n',
    );
    expect(await exchange(cluster.proxyPorts[(leader + 1) % 3] as number, ['mu_check\r\n'])).to.match(/^SERVER_ERROR mu-proxy: this replica does not lead; the leader is replica \d/);
  });

  it('serves Prometheus metrics with the memcached front end\'s counters on every replica', async () => {
    await exchange(port, ['set metered 0 0 1\r\nx\r\n', 'get metered\r\n']);
    const body = await (await fetch(`http://127.0.0.1:${cluster.metricsPorts[leader]}/metrics`)).text();
    expect(body).to.include(`mu_leader{node="${leader}"} 1`);
    expect(body).to.match(/^mu_memcached_writes_total\{node="\d"\} [1-9]\d*$/m);
    expect(body).to.match(/^mu_memcached_reads_total\{node="\d"\} [1-9]\d*$/m);
    expect(body).to.include('# TYPE mu_memcached_clients gauge');
    expect(body).to.not.match(/^mu_writes_total/m); // no Redis front end here
    const follower = (leader + 1) % 3;
    expect(await (await fetch(`http://127.0.0.1:${cluster.metricsPorts[follower]}/metrics`)).text()).to.include(`mu_leader_id{node="${follower}"} ${leader}`);
  });

  it('never sends memcached a line it would end its connection over (over 2048 bytes, not a get): the client is refused and let go', async () => {
    // 1983 gets then a long mg leave in one write to the backend; memcached's 16 KB read
    // would end inside the mg line (more than 2048 bytes without a line end: it closes).
    const gets = 'get k\r\n'.repeat(1983);
    const { received, closed } = await exchangeBytes(port, [Buffer.from(`${gets}mg k v O${'o'.repeat(2600)}\r\n`)], 500);
    const text = received.toString('latin1');
    expect(text.match(/^END\r\n/gm)).to.have.length(1983);
    expect(text.endsWith('END\r\nCLIENT_ERROR line too long\r\n')).to.equal(true);
    expect(closed).to.equal(true);
    expect(await exchange(port, ['set after 0 0 1\r\nx\r\n', 'get after\r\n'])).to.equal('STORED\r\nVALUE after 0 1\r\nx\r\nEND\r\n');
    for (const replica of cluster.replicas) expect(replica?.pipeline.backendFailed).to.equal(undefined);
    // A long multi-get is memcached's exception: it goes through.
    expect(await exchange(port, [`get ${Array.from({ length: 400 }, (_, i) => `key${i}`).join(' ')} after\r\n`], 100)).to.equal('VALUE after 0 1\r\nx\r\nEND\r\n');
  });

  it("refuses stats' key listings (a base64 key could end them early), and the replica goes on", async () => {
    const replies = await exchange(port, ['set listed 0 0 1\r\nx\r\n', 'stats cachedump 1 10\r\n', 'stats detail dump\r\n', 'version\r\n']);
    expect(replies).to.match(/^STORED\r\nCLIENT_ERROR mu-proxy: 'stats cachedump' is not allowed[^\r]*\r\nCLIENT_ERROR mu-proxy: 'stats detail' is not allowed[^\r]*\r\nVERSION /);
    for (const replica of cluster.replicas) expect(replica?.pipeline.backendFailed).to.equal(undefined);
  });

  it("a follower's handed-over client: an oversize add under noreply stays silent; a binary request or a line too long is refused and the connection ends", async () => {
    const follower = cluster.proxyPorts[(leader + 1) % 3] as number;
    const big = 'x'.repeat(1024 * 1024 + 10);
    expect(await exchange(follower, ['set fo 0 0 1\r\nx\r\n', `add fo 0 0 ${big.length} noreply\r\n${big}\r\n`, 'get fo\r\n'], 100)).to.equal('STORED\r\nVALUE fo 0 1\r\nx\r\nEND\r\n');
    const header = Buffer.alloc(24);
    header[0] = 0x80;
    header.writeUInt32BE(0x01020304, 12);
    const binary = await exchangeBytes(follower, [Buffer.from('set fb 0 0 1\r\nx\r\n'), header], 300);
    expect(binary.received.subarray(0, 8).toString()).to.equal('STORED\r\n');
    expect(binary.received[8]).to.equal(0x81);
    expect(binary.received.readUInt32BE(8 + 12)).to.equal(0x01020304);
    expect(binary.closed).to.equal(true);
    const long = await exchangeBytes(follower, [Buffer.from('set fl 0 0 1\r\nx\r\n'), Buffer.alloc(70 * 1024, 0x61)], 300);
    expect(long.received.toString()).to.equal('STORED\r\nCLIENT_ERROR line too long\r\n');
    expect(long.closed).to.equal(true);
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

describe('memcached front end at memcached.maxClients', function () {
  this.timeout(60000);
  let cluster: MemcachedCluster;

  before(async () => {
    cluster = await MemcachedCluster.start({ memcached: { maxClients: 1 } });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('refuses the clients over the limit, even those that reset the connection at once, and goes on', async () => {
    const port = cluster.proxyPorts[await cluster.leader()] as number;
    const holder = net.connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    holder.on('data', (chunk: Buffer) => received.push(chunk));
    await new Promise((resolve) => holder.once('connect', resolve));
    for (let i = 0; i < 100; i++) {
      const refused = net.connect(port, '127.0.0.1');
      refused.on('error', () => {});
      refused.on('connect', () => refused.resetAndDestroy());
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await exchange(port, ['version\r\n'])).to.equal('SERVER_ERROR mu-proxy: too many connections\r\n');
    holder.write('version\r\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    holder.destroy();
    expect(Buffer.concat(received).toString()).to.match(/^VERSION 1\.6\.\d+\r\n$/);
  });
});
