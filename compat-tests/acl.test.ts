// Differential compatibility of ACL key permissions: the same users, defined on a plain
// redis-server with ACL SETUSER and in the proxy's configuration, send the same commands;
// the replies (NOPERM errors included) must be byte for byte the same. Covers Redis 7's
// read/write key patterns (%R~, %W~, %RW~), where what a command does to each key comes
// from its key specs.
import { expect } from 'chai';

import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import { RedisServerProcess } from '../adapters/redis/redis_server_process.js';
import { RedisCluster } from '../proxy/testing/redis_cluster.js';
import { expectReplicasAgree } from './support.js';

const USERS = [
  { name: 'split', rules: 'on >pw %R~r:* %W~w:* ~rw:* +@all' },
  { name: 'allreads', rules: 'on >pw %R~* %W~w:* +@all' },
  { name: 'merged', rules: 'on >pw %R~m:* %W~m:* +@all' },
];

const text = (reply: Buffer): string => reply.toString('latin1');

async function run(port: number, user: string, commands: string[][]): Promise<string[]> {
  const client = await RedisBackend.connect({ port });
  try {
    const replies = await client.sendMany([encodeCommand(['AUTH', user, 'pw']), ...commands.map((argv) => encodeCommand(argv))]);
    return replies.map(text);
  } finally {
    await client.close();
  }
}

describe('compat: ACL key permissions (plain redis-server vs the proxy leader, same users)', function () {
  this.timeout(60000);
  let plain: RedisServerProcess;
  let cluster: RedisCluster;
  let leaderPort: number;

  before(async () => {
    plain = await RedisServerProcess.start();
    const admin = await RedisBackend.connect({ port: plain.port });
    try {
      for (const { name, rules } of USERS) {
        expect(text(await admin.send(encodeCommand(['ACL', 'SETUSER', name, ...rules.split(' ')]))), name).to.equal('+OK\r\n');
      }
    } finally {
      await admin.close();
    }
    cluster = await RedisCluster.start({ redis: { users: USERS } });
    leaderPort = cluster.proxyPorts[await cluster.leader()] as number;
  });
  after(async () => {
    await cluster?.stop();
    await plain?.stop();
  });

  async function expectSame(user: string, commands: string[][]): Promise<string[]> {
    const expected = await run(plain.port, user, commands);
    const actual = await run(leaderPort, user, commands);
    for (let i = 0; i < commands.length; i++) {
      expect(actual[i + 1], `${user}: ${(commands[i] as string[]).join(' ')}`).to.equal(expected[i + 1]);
    }
    expect(actual).to.deep.equal(expected);
    return actual.slice(1);
  }

  it('read-only, write-only and read-write patterns: each command needs what its key specs say it does to each key', async () => {
    const replies = await expectSame('split', [
      ['SET', 'w:1', 'v'], // write only: allowed on w:
      ['GET', 'w:1'], // a read: refused on w:
      ['SET', 'w:1', 'v2', 'GET'], // GET reads the old value: refused
      ['SET', 'r:1', 'v'], // refused on r:
      ['GET', 'r:1'],
      ['SET', 'rw:1', 'source'],
      ['COPY', 'rw:1', 'w:copy'], // reads the source, writes the destination
      ['COPY', 'w:1', 'rw:2'], // cannot read w:1
      ['APPEND', 'w:1', 'x'], // inserts without reading
      ['INCR', 'w:n'], // reads and updates
      ['EXISTS', 'w:1', 'r:1'], // neither reads a value nor writes: any pattern will do
      ['EXISTS', 'other'],
      ['DEL', 'r:1'], // deletes: a write
      ['DEL', 'w:copy'],
      ['MSET', 'w:a', '1', 'rw:b', '2'],
      ['MGET', 'w:a', 'rw:b'],
      ['LPUSH', 'w:l', '3', '1', '2'],
      ['LMOVE', 'w:l', 'rw:l', 'LEFT', 'LEFT'], // reads and deletes from the source
      ['LPUSH', 'rw:l2', 'a'],
      ['LMOVE', 'rw:l2', 'w:l', 'LEFT', 'LEFT'], // inserts into the destination only
      ['BITFIELD', 'w:b', 'GET', 'u8', '0'],
      ['BITFIELD', 'w:b', 'SET', 'u8', '0', '1'],
      ['BITFIELD', 'rw:b', 'SET', 'u8', '0', '1'],
      ['BITFIELD', 'r:b', 'GET', 'u8', '0'],
      ['SORT', 'r:l'],
      ['SORT', 'rw:l2', 'STORE', 'w:sorted'],
      ['SORT', 'rw:l2', 'STORE', 'r:sorted'],
      ['SORT', 'rw:l2', 'BY', 'nosort'],
      ['SORT', 'rw:l2', 'BY', 'weight_*'], // BY needs read access to every key
    ]);
    // Pinned, so that the comparison cannot pass with both sides refusing everything.
    expect(replies.slice(0, 4)).to.deep.equal([
      '+OK\r\n',
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
    ]);
    expect(replies[6]).to.equal(':1\r\n');
    await expectReplicasAgree(cluster);
  });

  it('%R~* reads every key (SORT BY is allowed) while writes stay limited; a pattern given twice adds up its permissions', async () => {
    const replies = await expectSame('allreads', [
      ['GET', 'anything'],
      ['SET', 'anything', 'v'],
      ['SET', 'w:x', 'v'],
      ['LPUSH', 'w:l', 'b', 'a'],
      ['SORT', 'w:l', 'BY', 'weight_*', 'GET', '#'],
      ['SORT', 'w:l', 'BY', 'weight_*', 'STORE', 'w:out'],
    ]);
    expect(replies[1]).to.match(/^-NOPERM/);
    expect(await expectSame('merged', [['SET', 'm:1', 'v', 'GET'], ['INCR', 'm:n'], ['GET', 'm:1'], ['SET', 'x', 'v']])).to.deep.equal([
      '$-1\r\n',
      ':1\r\n',
      '$1\r\nv\r\n',
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
    ]);
    await expectReplicasAgree(cluster);
  });
});
