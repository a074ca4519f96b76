// The Redis front end end to end, in one process: three real redis-servers behind three
// replicas over shm. Replies are compared as raw RESP bytes.
import { expect } from 'chai';

import { encodeCommand } from '../../adapters/redis/resp.js';
import type { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';
import { cutOff, heal } from '../../mu/testing/partition.js';
import { RedisCluster } from '../testing/redis_cluster.js';
import type { RedisReplica } from './redis_replica.js';

const command = (...argv: string[]) => encodeCommand(argv);
const text = (reply: Buffer) => reply.toString();

describe('Redis front end (three replicas, shm, real redis-servers)', function () {
  this.timeout(60000);
  let cluster: RedisCluster;
  let leader: number;
  let client: RedisBackend;

  before(async () => {
    cluster = await RedisCluster.start();
    leader = await cluster.leader();
    client = await cluster.connect(leader);
  });
  after(async () => {
    await client?.close();
    await cluster?.stop();
  });

  it('replicates a write to every backend and answers with the leader backend reply', async () => {
    expect(text(await client.send(command('SET', 'greeting', 'hello')))).to.equal('+OK\r\n');
    expect(text(await client.send(command('GET', 'greeting')))).to.equal('$5\r\nhello\r\n');
    expect(text(await client.send(command('GET', 'missing')))).to.equal('$-1\r\n');
    const digests = await cluster.digests();
    expect(new Set(digests).size).to.equal(1);
    for (let id = 0; id < 3; id++) {
      const direct = await cluster.connect(id, true);
      expect(text(await direct.send(command('GET', 'greeting')))).to.equal('$5\r\nhello\r\n');
      await direct.close();
    }
  });

  it('keeps each connection in order across pipelined writes and reads (read your writes)', async () => {
    const commands = [];
    for (let i = 0; i < 200; i++) {
      commands.push(command('INCR', 'counter'));
      commands.push(command('GET', 'counter'));
    }
    const replies = (await client.sendMany(commands)).map(text);
    for (let i = 0; i < 200; i++) {
      expect(replies[2 * i]).to.equal(`:${i + 1}\r\n`);
      expect(replies[2 * i + 1]).to.equal(`$${String(i + 1).length}\r\n${i + 1}\r\n`);
    }
  });

  it("carries SELECT's database with each write", async () => {
    const replies = (await client.sendMany([command('SELECT', '3'), command('SET', 'in-three', 'x'), command('SELECT', '0')])).map(text);
    expect(replies).to.deep.equal(['+OK\r\n', '+OK\r\n', '+OK\r\n']);
    await cluster.digests(); // followers apply a little after the leader answers
    for (let id = 0; id < 3; id++) {
      const direct = await cluster.connect(id, true);
      const answers = (await direct.sendMany([command('SELECT', '3'), command('GET', 'in-three'), command('SELECT', '0'), command('EXISTS', 'in-three')])).map(text);
      expect(answers.slice(1, 2).concat(answers.slice(3))).to.deep.equal(['$1\r\nx\r\n', ':0\r\n']);
      await direct.close();
    }
    expect(text(await client.send(command('SELECT', '99')))).to.equal('-ERR DB index is out of range\r\n');
  });

  it('applies MULTI/EXEC as one entry, and aborts on a queued error as Redis does', async () => {
    const replies = (await client.sendMany([command('MULTI'), command('SET', 'tx', '1'), command('INCR', 'tx'), command('EXEC')])).map(text);
    expect(replies).to.deep.equal(['+OK\r\n', '+QUEUED\r\n', '+QUEUED\r\n', '*2\r\n+OK\r\n:2\r\n']);
    const aborted = (await client.sendMany([command('MULTI'), command('SET', 'tx'), command('EXEC')])).map(text);
    expect(aborted[0]).to.equal('+OK\r\n');
    expect(aborted[1]).to.match(/^-ERR wrong number of arguments/);
    expect(aborted[2]).to.equal('-EXECABORT Transaction discarded because of previous errors.\r\n');
    expect(text(await client.send(command('EXEC')))).to.equal('-ERR EXEC without MULTI\r\n');
  });

  it('makes relative expirations absolute, so every replica expires the key at the same time', async () => {
    expect(text(await client.send(command('SET', 'ttl-key', 'v', 'EX', '100')))).to.equal('+OK\r\n');
    expect(text(await client.send(command('EXPIRE', 'greeting', '200')))).to.equal(':1\r\n');
    await cluster.digests();
    const deadlines: string[] = [];
    for (let id = 0; id < 3; id++) {
      const direct = await cluster.connect(id, true);
      deadlines.push(text(await direct.send(command('PEXPIRETIME', 'ttl-key'))));
      await direct.close();
    }
    expect(new Set(deadlines).size, deadlines.join(' ')).to.equal(1);
  });

  it("answers errors with Redis' own text and keeps the connection", async () => {
    const unknown = text(await client.send(command('NOSUCHCOMMAND', 'a')));
    expect(unknown).to.equal("-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' \r\n");
    expect(text(await client.send(command('GET')))).to.equal("-ERR wrong number of arguments for 'get' command\r\n");
    expect(text(await client.send(command('HELLO', '3')))).to.match(/^-NOPROTO/);
    expect(text(await client.send(command('CONFIG', 'SET', 'maxmemory', '1')))).to.match(/^-ERR 'config set' is not allowed through mu-proxy/);
    expect(text(await client.send(command('PING')))).to.equal('+PONG\r\n');
  });

  it('hands a follower\'s client to the leader: writes, reads, SELECT and the name carried over, transactions, blocking pops, pub/sub', async () => {
    const followerId = (leader + 1) % 3;
    const follower = await cluster.connect(followerId);
    // Local first (connection commands and INFO are this replica's), then handed over.
    const replies = (
      await follower.sendMany([
        command('SELECT', '4'),
        command('CLIENT', 'SETNAME', 'via-follower'),
        command('INFO', 'mu'),
        command('SET', 'forwarded', 'yes'),
        command('GET', 'forwarded'),
        command('CLIENT', 'GETNAME'),
        command('MULTI'),
        command('INCR', 'forwarded:n'),
        command('INCR', 'forwarded:n'),
        command('EXEC'),
        command('RPUSH', 'forwarded:l', 'x'),
        command('BLPOP', 'forwarded:l', '1'),
      ])
    ).map(text);
    expect(replies[2]).to.include(`mu_node_id:${followerId}`);
    expect([...replies.slice(0, 2), ...replies.slice(3)]).to.deep.equal([
      '+OK\r\n', '+OK\r\n', '+OK\r\n', '$3\r\nyes\r\n', '$12\r\nvia-follower\r\n',
      '+OK\r\n', '+QUEUED\r\n', '+QUEUED\r\n', '*2\r\n:1\r\n:2\r\n', ':1\r\n', '*2\r\n$11\r\nforwarded:l\r\n$1\r\nx\r\n',
    ]);
    const atLeader = (await client.sendMany([command('SELECT', '4'), command('GET', 'forwarded'), command('SELECT', '0')])).map(text);
    expect(atLeader[1]).to.equal('$3\r\nyes\r\n');
    await follower.close();
    // A subscriber at a follower hears what is published at the leader.
    const net = await import('node:net');
    const subscriber = net.connect(cluster.proxyPorts[followerId] as number, '127.0.0.1');
    let heard = '';
    subscriber.on('data', (chunk: Buffer) => (heard += chunk.toString()));
    await new Promise((resolve) => subscriber.once('connect', resolve));
    subscriber.write(command('SUBSCRIBE', 'forwarded:news'));
    for (let i = 0; i < 200 && !heard.includes(':1\r\n'); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(text(await client.send(command('PUBLISH', 'forwarded:news', 'hi')))).to.equal(':1\r\n');
    for (let i = 0; i < 200 && !heard.includes('hi'); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    subscriber.destroy();
    expect(heard).to.equal('*3\r\n$9\r\nsubscribe\r\n$14\r\nforwarded:news\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$14\r\nforwarded:news\r\n$2\r\nhi\r\n');
  });

  it('closes only the connection that sends malformed bytes', async () => {
    const net = await import('node:net');
    const socket = net.connect(cluster.proxyPorts[leader] as number, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Buffer.concat(received).toString()).to.equal('+PONG\r\n-ERR Protocol error: invalid bulk length\r\n');
    expect(text(await client.send(command('PING')))).to.equal('+PONG\r\n');
  });

  it('runs nondeterministic writes at the leader and replicates their effects', async () => {
    await client.sendMany([command('SADD', 'pool', 'a', 'b', 'c', 'd', 'e'), command('SET', 'float', '10.5'), command('HSET', 'h', 'f', '1.5')]);
    const replies = (
      await client.sendMany([
        command('SPOP', 'pool'),
        command('SCARD', 'pool'),
        command('SPOP', 'pool', '2'),
        command('INCRBYFLOAT', 'float', '0.1'),
        command('HINCRBYFLOAT', 'h', 'f', '2.25'),
        command('XADD', 'stream', '*', 'field', 'value'),
        command('SPOP', 'missing'),
        command('INCRBYFLOAT', 'pool', '1'),
        command('GET', 'float'),
      ])
    ).map(text);
    expect(replies[0]).to.match(/^\$1\r\n[a-e]\r\n$/);
    expect(replies[1]).to.equal(':4\r\n', 'a read pipelined after SPOP sees it');
    expect(replies[2]).to.match(/^\*2\r\n/);
    expect(replies[3]).to.equal('$4\r\n10.6\r\n');
    expect(replies[4]).to.equal('$4\r\n3.75\r\n');
    expect(replies[5]).to.match(/^\$\d+\r\n\d+-\d+\r\n$/);
    expect(replies[6]).to.equal('$-1\r\n');
    expect(replies[7]).to.match(/^-WRONGTYPE/);
    expect(replies[8]).to.equal('$4\r\n10.6\r\n');
    const digests = await cluster.digests();
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    for (let id = 0; id < 3; id++) {
      const direct = await cluster.connect(id, true);
      const answers = (await direct.sendMany([command('SCARD', 'pool'), command('GET', 'float'), command('XLEN', 'stream')])).map(text);
      await direct.close();
      expect(answers).to.deep.equal([':2\r\n', '$4\r\n10.6\r\n', ':1\r\n']);
    }
  });

  it('replicates consumer-group reads and claims as their effects: the same pending entries, owners, delivery counts and times on every replica', async () => {
    await client.sendMany([
      ...['1-1', '2-1', '3-1', '4-1', '5-1'].map((id) => command('XADD', 'jobs', id, 'n', id)),
      command('XGROUP', 'CREATE', 'jobs', 'workers', '0'),
    ]);
    const replies = (
      await client.sendMany([
        command('XREADGROUP', 'GROUP', 'workers', 'alice', 'COUNT', '2', 'STREAMS', 'jobs', '>'),
        command('XREADGROUP', 'GROUP', 'workers', 'bob', 'NOACK', 'COUNT', '1', 'STREAMS', 'jobs', '>'),
        command('XCLAIM', 'jobs', 'workers', 'bob', '0', '1', '1-1', 'JUSTID'),
        command('XAUTOCLAIM', 'jobs', 'workers', 'carol', '0', '0-0', 'COUNT', '1'),
        command('XREADGROUP', 'GROUP', 'workers', 'alice', 'STREAMS', 'jobs', '0'),
        command('XREADGROUP', 'GROUP', 'workers', 'dave', 'COUNT', '1', 'STREAMS', 'jobs', '>'),
        command('XDEL', 'jobs', '4-1'),
        command('XAUTOCLAIM', 'jobs', 'workers', 'erin', '0', '0-0'),
        command('XREADGROUP', 'GROUP', 'nobody', 'x', 'STREAMS', 'jobs', '>'),
        command('XCLAIM', 'jobs', 'workers', 'bob', '3600000', '5-1'),
        command('XPENDING', 'jobs', 'workers'),
      ])
    ).map(text);
    expect(replies[0]).to.include('1-1').and.include('2-1');
    expect(replies[1]).to.include('3-1');
    expect(replies[2]).to.equal('*1\r\n$3\r\n1-1\r\n'); // "1" is 1-0, never delivered: not claimed
    expect(replies[3]).to.match(/^\*3\r\n\$3\r\n2-1\r\n/); // 1-1 to carol, cursor at 2-1
    expect(replies[4]).to.include('2-1');
    expect(replies[5]).to.include('4-1');
    expect(replies[6]).to.equal(':1\r\n');
    expect(replies[7]).to.include('4-1'); // deleted while pending: reported as deleted
    expect(replies[8]).to.match(/^-NOGROUP/);
    expect(replies[9]).to.equal('*0\r\n');
    const everywhere = async (id: number): Promise<string> => {
      const direct = await cluster.connect(id, true);
      const [full, groups] = (await direct.sendMany([command('XINFO', 'STREAM', 'jobs', 'FULL'), command('XINFO', 'GROUPS', 'jobs')])).map(text);
      await direct.close();
      // Consumers' seen and active times are each server's own (as in Redis' replicas).
      return `${(full as string).replace(/\$(9|11)\r\n(seen-time|active-time)\r\n:\d+\r\n/g, '')}${groups}`;
    };
    await cluster.digests();
    const deadline = Date.now() + 10000;
    let states: string[] = [];
    do {
      states = await Promise.all([0, 1, 2].map(everywhere));
    } while (new Set(states).size > 1 && Date.now() < deadline);
    expect(new Set(states).size, states.join('\n---\n')).to.equal(1);
    expect(states[0]).to.include('alice').and.include('carol').and.include('dave').and.include('bob');
  });

  it('answers INFO on any replica, with a mu section', async () => {
    const info = text(await client.send(command('INFO')));
    expect(info).to.match(/^\$\d+\r\n# Server\r\n/);
    expect(info).to.include('# Mu\r\nmu_node_id:');
    expect(info).to.include('mu_role:leader');
    const follower = await cluster.connect((leader + 1) % 3);
    const followerInfo = text(await follower.send(command('INFO', 'mu')));
    await follower.close();
    expect(followerInfo).to.match(/mu_role:follower/);
    expect(followerInfo).to.not.include('# Server');
    const body = followerInfo.slice(followerInfo.indexOf('\r\n') + 2, -2);
    expect(Number(/^\$(\d+)/.exec(followerInfo)?.[1])).to.equal(Buffer.byteLength(body));
  });

  it('serves Prometheus metrics on every replica', async () => {
    const response = await fetch(`http://127.0.0.1:${cluster.metricsPorts[leader]}/metrics`);
    expect(response.status).to.equal(200);
    const body = await response.text();
    expect(body).to.include(`mu_leader{node="${leader}"} 1`);
    expect(body).to.match(/^mu_writes_total\{node="\d"\} [1-9]\d*$/m);
    expect(body).to.include('# TYPE mu_applied_index gauge');
    const follower = (leader + 1) % 3;
    const followerBody = await (await fetch(`http://127.0.0.1:${cluster.metricsPorts[follower]}/metrics`)).text();
    expect(followerBody).to.include(`mu_leader{node="${follower}"} 0`);
    expect(followerBody).to.include(`mu_leader_id{node="${follower}"} ${leader}`);
    expect((await fetch(`http://127.0.0.1:${cluster.metricsPorts[leader]}/other`)).status).to.equal(404);
  });

  it('WAIT answers how many other replicas a committed write is on (a majority: 1 of 3)', async () => {
    const replies = (await client.sendMany([command('SET', 'waited', '1'), command('WAIT', '2', '0'), command('WAIT', 'x', '0'), command('WAIT', '1', '-1')])).map(text);
    expect(replies).to.deep.equal(['+OK\r\n', ':1\r\n', '-ERR value is not an integer or out of range\r\n', '-ERR timeout is negative\r\n']);
  });

  it('a blocked pop whose client went away takes nothing', async () => {
    const blocked = await cluster.connect(leader);
    void blocked.send(command('BLPOP', 'abandoned', '0')).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    await blocked.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(text(await client.send(command('RPUSH', 'abandoned', 'kept')))).to.equal(':1\r\n');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(text(await client.send(command('LRANGE', 'abandoned', '0', '-1')))).to.equal('*1\r\n$4\r\nkept\r\n');
  });

  it('WATCH: writes whose keys the proxy cannot name (FLUSHALL, scripts) abort a watched transaction', async () => {
    const other = await cluster.connect(leader);
    for (const write of [command('FLUSHALL'), command('EVAL', "return redis.call('SET', 'elsewhere', '1')", '0')]) {
      expect(text(await client.send(command('WATCH', 'watched')))).to.equal('+OK\r\n');
      expect(text(await other.send(write))).to.not.match(/^-/);
      const replies = (await client.sendMany([command('MULTI'), command('SET', 'watched', '1'), command('EXEC')])).map(text);
      expect(replies).to.deep.equal(['+OK\r\n', '+QUEUED\r\n', '*-1\r\n']);
    }
    await other.close();
  });

  it("a follower whose redis-server restarts empty gets back in step: every type, binary keys, other databases, expiry", async () => {
    const binary = Buffer.from([0, 13, 10, 255, 36, 42]);
    const setup = [
      encodeCommand(['HSET', 'st:hash', 'a', '1', 'b', '2']),
      encodeCommand(['RPUSH', 'st:list', 'x', 'y', 'z']),
      encodeCommand(['ZADD', 'st:zset', '1.5', 'one', '2', 'two']),
      encodeCommand(['SADD', 'st:set', 'p', 'q']),
      encodeCommand(['XADD', 'st:stream', '5-1', 'f', 'v']),
      encodeCommand([Buffer.from('SET'), binary, binary]),
      encodeCommand(['SET', 'st:big', 'v'.repeat(200_000)]),
      encodeCommand(['SET', 'st:ttl', 'soon', 'PX', '600000']),
      encodeCommand(['SELECT', '7']),
      encodeCommand(['SET', 'st:in-seven', 'seven']),
      encodeCommand(['SELECT', '0']),
    ];
    for (const reply of await client.sendMany(setup)) expect(text(reply)).to.not.match(/^-/);
    const follower = (leader + 1) % 3;
    await (cluster.servers[follower] as RedisServerProcess).stop();
    await cluster.startServer(follower);
    // Writes go on meanwhile; the follower must end up with them too.
    for (let i = 0; i < 20; i++) expect(text(await client.send(command('INCR', 'st:during')))).to.equal(`:${i + 1}\r\n`);
    const replica = cluster.replicas[follower] as RedisReplica;
    const deadline = Date.now() + 20000;
    while (replica.pipeline.backendFailed !== undefined || replica.resync.completed === 0) {
      if (Date.now() > deadline) throw new Error(`not back in step: ${JSON.stringify(replica.resync.report())}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(text(await client.send(command('INCR', 'st:during')))).to.equal(':21\r\n');
    const digests = await cluster.digests();
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
    const direct = await cluster.connect(follower, true);
    const answers = (await direct.sendMany([command('PTTL', 'st:ttl'), command('SELECT', '7'), command('GET', 'st:in-seven'), command('SELECT', '0'), command('GET', 'st:during')])).map(text);
    await direct.close();
    expect(Number(answers[0]?.slice(1))).to.be.within(500_000, 600_000);
    expect(answers.slice(2)).to.deep.equal(['$5\r\nseven\r\n', '+OK\r\n', '$2\r\n21\r\n']);
  });

  it('answers a command refused in the subscribed context after the replies before it', async () => {
    const replica = cluster.replicas[leader] as RedisReplica;
    const net = await import('node:net');
    const socket = net.connect(cluster.proxyPorts[leader] as number, '127.0.0.1');
    let heard = '';
    socket.on('data', (chunk: Buffer) => (heard += chunk.toString()));
    await new Promise((resolve) => socket.once('connect', resolve));
    expect(text(await client.send(command('SET', 'ordered:key', 'hello')))).to.equal('+OK\r\n');
    // The read waits for its barrier to be applied, which the held apply stream delays.
    expect(await replica.pipeline.holdForSnapshot()).to.not.equal(undefined);
    socket.write(Buffer.concat([command('GET', 'ordered:key'), command('SUBSCRIBE', 'ordered'), command('SET', 'x', '1')]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    replica.pipeline.release();
    for (let i = 0; i < 400 && !heard.includes("'set'"); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    socket.destroy();
    expect(heard).to.equal(
      "$5\r\nhello\r\n*3\r\n$9\r\nsubscribe\r\n$7\r\nordered\r\n:1\r\n-ERR Can't execute 'set': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
  });

  it('WATCH: an EXEC without MULTI leaves the keys watched, as in Redis', async () => {
    const other = await cluster.connect(leader);
    expect((await client.sendMany([command('WATCH', 'kept-watch'), command('EXEC')])).map(text)).to.deep.equal(['+OK\r\n', '-ERR EXEC without MULTI\r\n']);
    expect(text(await other.send(command('SET', 'kept-watch', 'other')))).to.equal('+OK\r\n');
    const replies = (await client.sendMany([command('MULTI'), command('SET', 'kept-watch', 'mine'), command('EXEC')])).map(text);
    await other.close();
    expect(replies).to.deep.equal(['+OK\r\n', '+QUEUED\r\n', '*-1\r\n']);
  });

  it('EVAL_RO loads its script on every replica, so a later EVALSHA runs the same everywhere', async () => {
    const { createHash } = await import('node:crypto');
    const body = "return redis.call('SET', KEYS[1], 'from-evalsha')";
    const sha = createHash('sha1').update(body).digest('hex');
    // A read-only script may not write: refused, but its script is cached all the same.
    expect(text(await client.send(command('EVAL_RO', body, '1', 'ro:key')))).to.match(/^-ERR Write commands are not allowed from read-only scripts/);
    expect(text(await client.send(command('EVALSHA', sha, '1', 'ro:key')))).to.equal('+OK\r\n');
    const digests = await cluster.digests();
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
  });

  it('a transaction of more commands than a log command holds is refused, and the proxy lives on', async () => {
    const own = await cluster.connect(leader);
    const commands = [command('MULTI')];
    for (let i = 0; i < 65536; i++) commands.push(command('GET', 'tx:many'));
    commands.push(command('EXEC'));
    const replies = (await own.sendMany(commands)).map(text);
    await own.close();
    expect(replies[65535]).to.equal('+QUEUED\r\n');
    expect(replies[65536]).to.match(/^-ERR mu-proxy: a transaction holds at most 65535 commands/);
    expect(replies[65537]).to.equal('-EXECABORT Transaction discarded because of previous errors.\r\n');
    expect(text(await client.send(command('PING')))).to.equal('+PONG\r\n');
  });

  it('stops reading a client whose requests wait behind a blocking pop (bounded memory)', async () => {
    const blocked = await cluster.connect(leader);
    const requests = [command('BLPOP', 'deferred:l', '0')];
    for (let i = 0; i < 100_000; i++) requests.push(command('PING'));
    const all = blocked.sendMany(requests);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sessions = (cluster.replicas[leader] as RedisReplica).front as unknown as { sessions: Set<{ deferred?: unknown[] }> };
    const waiting = Math.max(...[...sessions.sessions].map((session) => session.deferred?.length ?? 0));
    // At most the pipeline limit (10000 by default) and what one read brought in.
    expect(waiting).to.be.below(20_000);
    expect(text(await client.send(command('RPUSH', 'deferred:l', 'v')))).to.equal(':1\r\n');
    const replies = (await all).map(text);
    await blocked.close();
    expect(replies[0]).to.equal('*2\r\n$10\r\ndeferred:l\r\n$1\r\nv\r\n');
    expect(replies.slice(1).every((reply) => reply === '+PONG\r\n')).to.equal(true);
  });

  it('a follower that gets back in step has the function library too', async () => {
    const library = "#!lua name=stlib\nredis.register_function('stset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";
    expect(text(await client.send(command('FUNCTION', 'LOAD', 'REPLACE', library)))).to.equal('$5\r\nstlib\r\n');
    const follower = (leader + 2) % 3;
    const replica = cluster.replicas[follower] as RedisReplica;
    const completed = replica.resync.completed;
    await (cluster.servers[follower] as RedisServerProcess).stop();
    await cluster.startServer(follower);
    const deadline = Date.now() + 20000;
    while (replica.pipeline.backendFailed !== undefined || replica.resync.completed === completed) {
      if (Date.now() > deadline) throw new Error(`not back in step: ${JSON.stringify(replica.resync.report())}`);
      expect(text(await client.send(command('INCR', 'fn:during')))).to.match(/^:\d+\r\n$/);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(text(await client.send(command('FCALL', 'stset', '1', 'fn:key', 'v')))).to.equal('+OK\r\n');
    const digests = await cluster.digests();
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
  });

  it('a snapshot recipient that stops reading does not hold the donor back for ever', async function () {
    this.timeout(60000);
    // 20 MB that DUMP cannot compress: more than the socket buffers take from a reader that stopped.
    const { randomBytes } = await import('node:crypto');
    const keys = Array.from({ length: 40 }, (_, i) => `stall:${i}`);
    const writes = keys.map((key) => encodeCommand(['SET', key, randomBytes(500_000)]));
    for (const reply of await client.sendMany(writes)) expect(text(reply)).to.equal('+OK\r\n');
    const net = await import('node:net');
    const stalled = net.connect(cluster.proxyPorts[leader] as number, '127.0.0.1');
    stalled.on('error', () => {});
    await new Promise((resolve) => stalled.once('connect', resolve));
    stalled.write(command('MU', 'SNAPSHOT'));
    stalled.pause(); // reads nothing: the donor's socket fills up
    await new Promise((resolve) => setTimeout(resolve, 500));
    const started = Date.now();
    const answered = await Promise.race([
      client.send(command('SET', 'stall:after', '1')).then(text),
      new Promise<string>((resolve) => setTimeout(() => resolve('no answer'), 30000)),
    ]);
    stalled.destroy();
    expect(answered).to.equal('+OK\r\n');
    expect(Date.now() - started).to.be.below(30000);
    expect(text(await client.send(command('DEL', ...keys)))).to.equal(':40\r\n');
  });

  it('leaves every backend with the same digest', async () => {
    const digests = await cluster.digests();
    expect(digests[0]).to.match(/^\+[0-9a-f]{40}$/);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
  });
});

describe('Redis front end: a watching client whose replica stops leading', function () {
  this.timeout(60000);
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a WATCH made at the old leader still aborts the transaction once the client is handed to the new one', async () => {
    const first = await cluster.leader();
    const watcher = await cluster.connect(first);
    expect((await watcher.sendMany([command('SET', 'wk', '1'), command('WATCH', 'wk'), command('GET', 'wk')])).map(text)).to.deep.equal(['+OK\r\n', '+OK\r\n', '$1\r\n1\r\n']);
    // The leader's redis-server restarts: the leader steps down while it gets back in step,
    // another replica takes over, and the old leader comes back as a follower.
    const old = cluster.replicas[first] as RedisReplica;
    await (cluster.servers[first] as RedisServerProcess).stop();
    // A write makes the old leader find its backend gone.
    const poke = await cluster.connect(first);
    await poke.send(command('SET', 'poke', '1'));
    await poke.close();
    const deadline = Date.now() + 30000;
    let second = -1;
    while (second < 0) {
      if (Date.now() > deadline) throw new Error(`no new leader: ${JSON.stringify(old.resync.report())}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      second = cluster.replicas.findIndex((replica, id) => id !== first && replica?.member.replica.isLeader === true);
    }
    await cluster.startServer(first);
    while (old.pipeline.backendFailed !== undefined || old.resync.completed === 0) {
      if (Date.now() > deadline) throw new Error(`not back in step: ${JSON.stringify(old.resync.report())}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await cluster.leader()).to.equal(second);
    const writer = await cluster.connect(second);
    expect(text(await writer.send(command('SET', 'wk', '2')))).to.equal('+OK\r\n');
    await cluster.digests();
    // Another client wrote the watched key: EXEC must not run the transaction.
    const replies = (await watcher.sendMany([command('MULTI'), command('SET', 'wk', '3'), command('EXEC')])).map(text);
    expect(replies).to.deep.equal(['+OK\r\n', '+QUEUED\r\n', '*-1\r\n']);
    expect(text(await writer.send(command('GET', 'wk')))).to.equal('$1\r\n2\r\n');
    await watcher.close();
    await writer.close();
  });
});

describe('Redis front end: a leader whose backend stops following the log', function () {
  this.timeout(60000);
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('does not serve a read waiting for its place in the log from a backend that diverged', async () => {
    const leader = await cluster.leader();
    const replica = cluster.replicas[leader] as RedisReplica;
    const client = await cluster.connect(leader);
    expect(text(await client.send(command('SET', 'dk', 'old')))).to.equal('+OK\r\n');
    // Entries commit but wait to be applied here, as while this replica serves a snapshot.
    expect(await replica.pipeline.holdForSnapshot()).to.not.equal(undefined);
    const pending = client.sendMany([command('SET', 'dk', 'new'), command('GET', 'dk')]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // As when a nondeterministic write ran here and its effect was not replicated.
    replica.pipeline.diverged('test: a write the log does not hold');
    const replies = (await pending).map(text);
    await client.close();
    expect(replies[0]).to.match(/^-ERR mu-proxy: the local backend failed/);
    expect(replies[1]).to.match(/^-MASTERDOWN /);
  });
});

describe('Redis front end with followerRequests "redirect"', function () {
  this.timeout(60000);
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start({ redis: { followerRequests: 'redirect' } });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a follower refuses what only the leader serves, naming the leader, and serves the rest', async () => {
    const leader = await cluster.leader();
    const follower = await cluster.connect((leader + 1) % 3);
    const replies = (
      await follower.sendMany([command('SET', 'x', '1'), command('GET', 'x'), command('BLPOP', 'l', '0'), command('SUBSCRIBE', 'c'), command('PING'), command('INFO', 'server')])
    ).map(text);
    for (const refused of replies.slice(0, 4)) expect(refused).to.match(/^-READONLY mu-proxy: this replica does not lead; the leader is replica \d at 127\.0\.0\.1:\d+/);
    expect(replies[4]).to.equal('+PONG\r\n');
    expect(replies[5]).to.match(/^\$\d+\r\n# Server/);
    await follower.close();
  });
});

describe('Redis front end with ACL users', function () {
  this.timeout(60000);
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start({
      redis: {
        requirepass: 'admin-pw',
        users: [
          { name: 'app', rules: 'on >app-pw ~app:* +@all -@dangerous' },
          { name: 'reader', rules: 'on >reader-pw allkeys +@read' },
          { name: 'gone', rules: 'off >gone-pw allkeys +@all' },
          { name: 'listener', rules: 'on >listener-pw allkeys &news +subscribe +ping' },
          { name: 'keyed', rules: 'on >keyed-pw ~app:* +@all' },
        ],
      },
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('authenticates users and checks their commands and keys, at the leader and through a follower', async () => {
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    for (const id of [leader, follower]) {
      const connection = await cluster.connect(id);
      const replies = (
        await connection.sendMany([
          command('GET', 'app:1'),
          command('AUTH', 'gone', 'gone-pw'),
          command('AUTH', 'app', 'wrong'),
          command('AUTH', 'app', 'app-pw'),
          command('ACL', 'WHOAMI'),
          command('SET', `app:${id}`, 'v'),
          command('GET', `app:${id}`),
          command('SET', 'other', 'v'),
          command('FLUSHALL'),
          command('MULTI'),
          command('SET', 'app:tx', '1'),
          command('DEL', 'elsewhere'),
          command('EXEC'),
          command('MU', 'SNAPSHOT'),
        ])
      ).map(text);
      expect(replies, `replica ${id}`).to.deep.equal([
        '-NOAUTH Authentication required.\r\n',
        '-WRONGPASS invalid username-password pair or user is disabled.\r\n',
        '-WRONGPASS invalid username-password pair or user is disabled.\r\n',
        '+OK\r\n',
        '$3\r\napp\r\n',
        '+OK\r\n',
        '$1\r\nv\r\n',
        '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n",
        '+OK\r\n',
        '+QUEUED\r\n',
        '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
        '-EXECABORT Transaction discarded because of previous errors.\r\n',
        "-NOPERM this user has no permissions to run the 'mu' command\r\n",
      ]);
      await connection.close();
    }
    const reader = await cluster.connect(leader);
    const replies = (await reader.sendMany([command('AUTH', 'reader', 'reader-pw'), command('GET', 'app:1'), command('SET', 'app:1', 'x'), command('ACL', 'USERS')])).map(text);
    expect(replies).to.deep.equal([
      '+OK\r\n',
      '$1\r\nv\r\n',
      "-NOPERM this user has no permissions to run the 'set' command\r\n",
      "-NOPERM this user has no permissions to run the 'acl|users' command\r\n",
    ]);
    const admin = (await reader.sendMany([command('AUTH', 'admin-pw'), command('ACL', 'WHOAMI'), command('ACL', 'USERS')])).map(text);
    expect(admin).to.deep.equal(['+OK\r\n', '$7\r\ndefault\r\n', '*6\r\n$3\r\napp\r\n$7\r\ndefault\r\n$4\r\ngone\r\n$5\r\nkeyed\r\n$8\r\nlistener\r\n$6\r\nreader\r\n']);
    await reader.close();
  });

  it('checks the commands a subscribed connection sends', async () => {
    const leader = await cluster.leader();
    const net = await import('node:net');
    const socket = net.connect(cluster.proxyPorts[leader] as number, '127.0.0.1');
    let heard = '';
    socket.on('data', (chunk: Buffer) => (heard += chunk.toString()));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.concat([command('AUTH', 'listener', 'listener-pw'), command('SUBSCRIBE', 'news'), command('SUBSCRIBE', 'weather'), command('PSUBSCRIBE', 'n*'), command('PING')]));
    for (let i = 0; i < 400 && !heard.includes('pong'); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    socket.destroy();
    expect(heard).to.equal(
      "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n-NOPERM this user has no permissions to access one of the channels used as arguments\r\n-NOPERM this user has no permissions to run the 'psubscribe' command\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    );
  });

  it('a user limited to some keys cannot reach others through a script or SORT', async () => {
    const leader = await cluster.leader();
    const connection = await cluster.connect(leader);
    const replies = (
      await connection.sendMany([
        command('AUTH', 'keyed', 'keyed-pw'),
        command('RPUSH', 'app:sorted', '1'),
        command('EVAL', "return redis.call('SET', 'outside', 'x')", '0'),
        command('FCALL', 'nosuch', '0'),
        command('SORT', 'app:sorted', 'GET', 'outside*'),
        command('SORT', 'app:sorted', 'BY', 'outside*'),
        command('SORT_RO', 'app:sorted', 'BY', 'nosort'),
        command('AUTH', 'admin-pw'),
        command('EXISTS', 'outside'),
      ])
    ).map(text);
    await connection.close();
    expect(replies).to.deep.equal([
      '+OK\r\n',
      ':1\r\n',
      "-NOPERM mu-proxy: scripts and functions run their commands unchecked; only a user with every permission on every key may run them\r\n",
      "-NOPERM mu-proxy: scripts and functions run their commands unchecked; only a user with every permission on every key may run them\r\n",
      '-ERR GET option of SORT denied due to insufficient ACL permissions.\r\n',
      '-ERR BY option of SORT denied due to insufficient ACL permissions.\r\n',
      '*1\r\n$1\r\n1\r\n',
      '+OK\r\n',
      ':0\r\n',
    ]);
  });

  it('refuses a replica greeting without a token of the cluster secret', async () => {
    const connection = await cluster.connect(await cluster.leader());
    const replies = (
      await connection.sendMany([
        command('MU', 'FORWARDED', '1', 'default', String(Date.now()), 'f'.repeat(64)),
        command('MU', 'PEER', '1', 'default', '0', 'f'.repeat(64)),
        command('GET', 'app:1'),
      ])
    ).map(text);
    expect(replies[0]).to.equal('-NOAUTH mu-proxy: refused MU FORWARDED (a token not made with the cluster secret)\r\n');
    expect(replies[1]).to.equal('-NOAUTH mu-proxy: refused MU PEER (a stale or malformed token)\r\n');
    expect(replies[2]).to.equal('-NOAUTH Authentication required.\r\n');
    await connection.close();
  });
});

describe('Redis front end: a leader cut off from the others over the fabric (shm fault injection)', function () {
  this.timeout(60000);
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start({ engine: { unknownOutcomeMs: 1000 } });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('answers a write in flight with TIMEOUT (outcome unknown) instead of hanging, refuses later ones, and agrees with the others once healed', async () => {
    const old = await cluster.leader();
    const client = await cluster.connect(old);
    expect(text(await client.send(command('SET', 'before', '1')))).to.equal('+OK\r\n');
    const others = [0, 1, 2].filter((id) => id !== old);
    cutOff(cluster.clusterName, old, others);
    const started = Date.now();
    const inFlight = text(await client.send(command('SET', 'during', '1')));
    expect(inFlight).to.match(/^-TIMEOUT mu-proxy: the outcome is unknown: /);
    expect(Date.now() - started).to.be.at.least(900);
    // Deposed by now: a later write is refused at once (no leader it can reach, or one it
    // names), never left waiting; so is a linearizable read, which would need a barrier.
    const later = text(await client.send(command('SET', 'later', '1')));
    expect(later).to.match(/^-(CLUSTERDOWN|READONLY|TRYAGAIN|TIMEOUT) /);
    const read = text(await client.send(command('GET', 'before')));
    expect(read).to.match(/^-(CLUSTERDOWN|READONLY|TRYAGAIN|TIMEOUT) /);
    await client.close();
    heal(cluster.clusterName, old);
    const successor = await cluster.leader();
    const fresh = await cluster.connect(successor);
    expect(text(await fresh.send(command('SET', 'after', '1')))).to.equal('+OK\r\n');
    await fresh.close();
    const digests = await cluster.digests(20000);
    expect(new Set(digests).size, digests.join(' ')).to.equal(1);
  });
});
