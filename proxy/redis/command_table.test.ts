// The command table against a real redis-server 7.0 (started on a free port): built from
// its COMMAND reply (strings and Buffers), every command classified, spot checks of
// classes including subcommands and argument-dependent ones, keys() checked against the
// server's own COMMAND GETKEYS, and malformed replies refused with clear messages.
import { expect } from 'chai';
import { Redis } from 'ioredis';

import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';

import { COMMAND_CLASSES, type CommandClass, CommandTable, HAND_KEPT, arityOk } from './command_table.js';

const argv = (...args: string[]): Buffer[] => args.map((arg) => Buffer.from(arg, 'latin1'));
const texts = (buffers: Buffer[]): string[] => buffers.map((b) => b.toString('latin1'));

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(Error);
    return error as Error;
  }
  return expect.fail('expected a throw');
}

describe('CommandTable (redis-server 7.0)', () => {
  let server: RedisServerProcess | undefined;
  let client: Redis;
  let reply: unknown;
  let table: CommandTable;

  before(async () => {
    server = await RedisServerProcess.start();
    client = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    reply = await client.call('COMMAND');
    table = CommandTable.fromCommandReply(reply);
  });

  after(async () => {
    client?.disconnect();
    if (server !== undefined) await server.stop();
  });

  it('reads the live COMMAND reply: size is COMMAND COUNT, and SET, GET, CONFIG GET carry their fields', async () => {
    expect(table.size).to.equal(Number(await client.call('COMMAND', 'COUNT')));
    const set = table.lookup(argv('SET', 'k', 'v'));
    expect(set?.info).to.include({ name: 'set', arity: -3, firstKey: 1, lastKey: 1, step: 1 });
    expect([...(set?.info.flags ?? [])]).to.include.members(['write', 'denyoom']);
    expect(table.lookup(argv('get', 'k'))?.info.flags.has('readonly')).to.equal(true);
    const configGet = table.lookup(argv('CONFIG', 'GET', 'maxmemory'));
    expect(configGet?.info).to.include({ name: 'config|get', arity: -3 });
    expect(table.lookup(argv('SPOP', 's'))?.info.tips).to.include('nondeterministic_output');
  });

  it('reads the same table from a reply whose elements are Buffers', async () => {
    const buffers = await client.callBuffer('COMMAND');
    expect((buffers as unknown[])[0]).to.be.an('array');
    expect(((buffers as unknown[][])[0] as unknown[])[0]).to.be.instanceOf(Buffer);
    const fromBuffers = CommandTable.fromCommandReply(buffers);
    const summary = (t: CommandTable): string[] => t.list().map((i) => `${i.name} ${i.arity} ${[...i.flags].join(',')} ${i.class} ${i.tips.join(',')}`);
    expect(summary(fromBuffers)).to.deep.equal(summary(table));
    expect(texts(fromBuffers.keys(argv('MSET', 'a', '1', 'b', '2')))).to.deep.equal(['a', 'b']);
  });

  it('gives every command and subcommand the server reports a class (summary per class)', () => {
    const all = table.list();
    const reported = (reply as unknown[][]).reduce((n, entry) => n + 1 + ((entry[9] as unknown[] | undefined)?.length ?? 0), 0);
    expect(all.length).to.equal(reported);
    const counts = new Map<CommandClass, number>(COMMAND_CLASSES.map((cls) => [cls, 0]));
    for (const info of all) {
      expect(COMMAND_CLASSES, info.name).to.include(info.class);
      counts.set(info.class, (counts.get(info.class) ?? 0) + 1);
      // lookup reaches every entry by its name (and subcommand name)
      const found = table.lookup(argv(...info.name.split('|')));
      expect(found?.info.name, info.name).to.equal(info.name);
    }
    for (const cls of COMMAND_CLASSES) expect(counts.get(cls), `no command in class ${cls}`).to.be.greaterThan(0);
    const line = [...counts].map(([cls, n]) => `${cls} ${n}`).join(', ');
    console.log(`      ${all.length} commands and subcommands (${table.size} top level): ${line}`);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).to.equal(all.length);
  });

  it('uses every hand-kept name the 7.0 server knows, each with a reason', () => {
    const names = new Set(table.list().map((i) => i.name));
    const containers = new Set([...names].filter((n) => n.includes('|')).map((n) => n.split('|')[0]));
    const missing: string[] = [];
    for (const [name, rule] of HAND_KEPT) {
      expect(rule.why.length, name).to.be.greaterThan(10);
      const known = name.endsWith('|*') ? containers.has(name.slice(0, -2)) : names.has(name);
      if (!known) missing.push(name);
    }
    expect(missing).to.deep.equal(['waitaof']); // Redis 7.2
  });

  const spotChecks: Array<[string[], CommandClass]> = [
    [['GET', 'k'], 'read'],
    [['MGET', 'a', 'b'], 'read'],
    [['DBSIZE'], 'read'],
    [['SCAN', '0'], 'read'],
    [['HGETALL', 'h'], 'read'],
    [['XINFO', 'STREAM', 's'], 'read'],
    [['SCRIPT', 'EXISTS', 'abc'], 'read'],
    [['FUNCTION', 'LIST'], 'read'],
    [['DEL', 'a'], 'write'],
    [['INCR', 'n'], 'write'],
    [['LMOVE', 'a', 'b', 'LEFT', 'RIGHT'], 'write'],
    [['SWAPDB', '0', '1'], 'write'],
    [['XGROUP', 'CREATE', 's', 'g', '$'], 'write'],
    [['EXPIREAT', 'k', '100'], 'write'],
    [['EXPIRE', 'k', '10'], 'write-rewrite'],
    [['PEXPIRE', 'k', '10'], 'write-rewrite'],
    [['SETEX', 'k', '10', 'v'], 'write-rewrite'],
    [['PSETEX', 'k', '10', 'v'], 'write-rewrite'],
    [['RESTORE', 'k', '0', 'x'], 'write-rewrite'],
    [['INCRBYFLOAT', 'n', '1.5'], 'write-effects'],
    [['HINCRBYFLOAT', 'h', 'f', '1.5'], 'write-effects'],
    [['XCLAIM', 's', 'g', 'c', '0', '1-1'], 'write-effects'],
    [['XAUTOCLAIM', 's', 'g', 'c', '0', '0'], 'write-effects'],
    [['MULTI'], 'transaction'],
    [['exec'], 'transaction'],
    [['WATCH', 'k'], 'transaction'],
    [['EVAL', 'return 1', '0'], 'script'],
    [['EVALSHA_RO', 'abc', '0'], 'script'],
    [['FCALL', 'f', '0'], 'script'],
    [['SCRIPT', 'LOAD', 'return 1'], 'script'],
    [['FUNCTION', 'LOAD', 'code'], 'script'],
    [['SCRIPT', 'KILL'], 'rejected'],
    [['BLPOP', 'l', '0'], 'blocking'],
    [['BZMPOP', '0', '1', 'z', 'MIN'], 'blocking'],
    [['WAIT', '1', '0'], 'blocking'],
    [['SUBSCRIBE', 'c'], 'pubsub'],
    [['PUBLISH', 'c', 'm'], 'pubsub'],
    [['PUBSUB', 'CHANNELS'], 'pubsub'],
    [['PING'], 'connection'],
    [['HELLO', '3'], 'connection'],
    [['SELECT', '1'], 'connection'],
    [['CLIENT', 'SETNAME', 'x'], 'connection'],
    [['client', 'list'], 'connection'],
    [['COMMAND', 'COUNT'], 'connection'],
    [['CLIENT', 'KILL', 'ID', '1'], 'rejected'],
    [['CLIENT', 'PAUSE', '10'], 'rejected'],
    [['INFO'], 'admin-local'],
    [['TIME'], 'admin-local'],
    [['CONFIG', 'GET', 'maxmemory'], 'admin-local'],
    [['cOnFiG', 'gEt', 'maxmemory'], 'admin-local'],
    [['MEMORY', 'USAGE', 'k'], 'admin-local'],
    [['OBJECT', 'ENCODING', 'k'], 'admin-local'],
    [['SLOWLOG', 'GET'], 'admin-local'],
    [['LATENCY', 'LATEST'], 'admin-local'],
    [['CONFIG', 'HELP'], 'admin-local'],
    [['CONFIG', 'SET', 'maxmemory', '1'], 'rejected'],
    [['CONFIG', 'REWRITE'], 'rejected'],
    [['SHUTDOWN'], 'rejected'],
    [['REPLICAOF', 'h', '1'], 'rejected'],
    [['BGSAVE'], 'rejected'],
    [['MONITOR'], 'rejected'],
    [['CLUSTER', 'NODES'], 'rejected'],
    [['MIGRATE', 'h', '1', 'k', '0', '1'], 'rejected'],
    [['MODULE', 'LOAD', 'x.so'], 'rejected'],
    [['ACL', 'SETUSER', 'u'], 'rejected'],
  ];

  it('classifies about sixty commands and subcommands as documented', () => {
    const wrong = spotChecks.filter(([args, cls]) => table.lookup(argv(...args))?.class !== cls);
    expect(wrong.map(([args, cls]) => `${args.join(' ')}: ${table.lookup(argv(...args))?.class} (expected ${cls})`)).to.deep.equal([]);
  });

  const argvDependent: Array<[string[], CommandClass]> = [
    [['FLUSHALL'], 'write'],
    [['FLUSHALL', 'SYNC'], 'write'],
    [['FLUSHALL', 'ASYNC'], 'rejected'],
    [['flushdb', 'async'], 'rejected'],
    [['FLUSHDB', 'sync'], 'write'],
    [['FLUSHALL', 'ASYNC', 'x'], 'write'], // a syntax error for the backend, the same everywhere
    [['SET', 'k', 'v'], 'write'],
    [['SET', 'k', 'v', 'NX', 'GET'], 'write'],
    [['SET', 'k', 'v', 'EXAT', '100'], 'write'],
    [['SET', 'k', 'v', 'KEEPTTL'], 'write'],
    [['SET', 'k', 'v', 'EX', '10'], 'write-rewrite'],
    [['SET', 'k', 'v', 'NX', 'px', '10'], 'write-rewrite'],
    [['SET', 'ex', 'px'], 'write'], // key and value named like options
    [['GETEX', 'k'], 'write'],
    [['GETEX', 'k', 'PERSIST'], 'write'],
    [['GETEX', 'k', 'EX', '10'], 'write-rewrite'],
    [['GETEX', 'k', 'Px', '10'], 'write-rewrite'],
    [['SPOP', 's'], 'write-effects'],
    [['SPOP', 's', '3'], 'write-effects'],
    [['XADD', 's', '*', 'f', 'v'], 'write-effects'],
    [['XADD', 's', 'NOMKSTREAM', 'MAXLEN', '=', '5', '*', 'f', 'v'], 'write-effects'],
    [['XADD', 's', '1-1', 'f', 'v'], 'write'],
    [['XADD', 's', '5-*', 'f', 'v'], 'write'],
    [['XADD', 's', 'MAXLEN', '10', '1-1', 'f', 'v'], 'write'],
    [['XADD', 's', 'MAXLEN', '~', '10', '1-1', 'f', 'v'], 'write-effects'],
    [['XADD', 's', 'MINID', '=', '0-1', 'LIMIT', '0', '1-1', 'f', '*'], 'write'],
    [['XTRIM', 's', 'MAXLEN', '10'], 'write'],
    [['XTRIM', 's', 'MINID', '~', '10', 'LIMIT', '5'], 'write-effects'],
    [['XREAD', 'STREAMS', 's', '0'], 'read'],
    [['XREAD', 'COUNT', '1', 'STREAMS', 'block', '0'], 'read'],
    [['XREAD', 'COUNT', '1', 'BLOCK', '0', 'STREAMS', 's', '0'], 'blocking'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '>'], 'write-effects'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'NOACK', 'block', '10', 'STREAMS', 's', '>'], 'blocking'],
    [['SORT', 'l'], 'read'],
    [['SORT', 'l', 'BY', 'w_*', 'LIMIT', '0', '5', 'ALPHA'], 'read'],
    [['SORT', 'l', 'STORE', 'dst'], 'write'],
    [['GEORADIUS', 'g', '0', '0', '10', 'km'], 'read'],
    [['GEORADIUS', 'g', '0', '0', '10', 'km', 'STOREDIST', 'd'], 'write'],
    [['GEORADIUSBYMEMBER', 'g', 'store', '10', 'km'], 'read'],
    [['GEORADIUSBYMEMBER', 'g', 'm', '10', 'km', 'store', 'd'], 'write'],
    [['PFCOUNT', 'h'], 'write'],
    [['PFCOUNT', 'h1', 'h2'], 'read'],
    [['DEBUG', 'DIGEST'], 'admin-local'],
    [['debug', 'digest-value', 'k'], 'admin-local'],
    [['DEBUG', 'SLEEP', '0'], 'rejected'],
    [['DEBUG', 'RELOAD'], 'rejected'],
    [['CONFIG'], 'admin-local'], // a container without its subcommand: the backend's arity error
    [['CONFIG', 'NOSUCH'], 'admin-local'], // unknown subcommand: the backend's error
  ];

  it('resolves argument-dependent classes', () => {
    const wrong = argvDependent.filter(([args, cls]) => table.lookup(argv(...args))?.class !== cls);
    expect(wrong.map(([args, cls]) => `${args.join(' ')}: ${table.lookup(argv(...args))?.class} (expected ${cls})`)).to.deep.equal([]);
    // option names compare like Redis: case insensitive, up to the first NUL byte
    expect(table.lookup([Buffer.from('SET'), Buffer.from('k'), Buffer.from('v'), Buffer.from('ex\0zz'), Buffer.from('10')])?.class).to.equal('write-rewrite');
    expect(table.lookup([Buffer.from('SET'), Buffer.from('k'), Buffer.from('v'), Buffer.from('exz'), Buffer.from('10')])?.class).to.equal('write');
  });

  it('returns the static info with the argument-dependent class, and undefined for unknown commands', () => {
    const found = table.lookup(argv('FLUSHALL', 'ASYNC'));
    expect(found?.info.name).to.equal('flushall');
    expect(found?.info.class).to.equal('write');
    expect(found?.class).to.equal('rejected');
    expect(table.lookup(argv('CONFIG', 'NOSUCH'))?.info.name).to.equal('config');
    expect(table.lookup(argv('NOSUCHCOMMAND', 'x'))).to.equal(undefined);
    expect(table.lookup([])).to.equal(undefined);
    expect(table.lookup([Buffer.from('get\0x'), Buffer.from('k')])).to.equal(undefined); // Redis hashes the whole name
  });

  it('PFCOUNT of one key is a write: it rewrites the cached cardinality in the value', async () => {
    await client.pfadd('pf', 'a', 'b', 'c');
    const before = await client.getBuffer('pf');
    await client.pfcount('pf');
    const after = await client.getBuffer('pf');
    expect(before?.equals(after as Buffer)).to.equal(false);
    await client.del('pf');
  });

  const keyCases: Array<[string[], string[]]> = [
    [['SET', 'k', 'v', 'EX', '10'], ['k']],
    [['MSET', 'a', '1', 'b', '2', 'c', '3'], ['a', 'b', 'c']],
    [['DEL', 'a', 'b', 'c'], ['a', 'b', 'c']],
    [['LMOVE', 'src', 'dst', 'LEFT', 'RIGHT'], ['src', 'dst']],
    [['EVAL', 'return 1', '2', 'k1', 'k2', 'arg1'], ['k1', 'k2']],
    [['EVALSHA', 'abc', '1', 'k1', 'arg1', 'arg2'], ['k1']],
    [['FCALL', 'f', '2', 'k1', 'k2'], ['k1', 'k2']],
    [['XREAD', 'COUNT', '1', 'STREAMS', 's1', 's2', '0', '0'], ['s1', 's2']],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'streams', '>'], ['streams']],
    [['ZUNIONSTORE', 'dst', '2', 'z1', 'z2', 'WEIGHTS', '1', '2'], ['dst', 'z1', 'z2']],
    [['BLMPOP', '0', '2', 'l1', 'l2', 'LEFT'], ['l1', 'l2']],
    [['SORT', 'l', 'BY', 'w_*', 'GET', '#', 'STORE', 'dst'], ['l', 'dst']],
    [['GEORADIUS', 'g', '0', '0', '10', 'km', 'STORE', 'd'], ['g', 'd']],
    [['OBJECT', 'ENCODING', 'k'], ['k']],
    [['XGROUP', 'CREATE', 's', 'g', '$'], ['s']],
    [['BITOP', 'AND', 'dst', 'a', 'b'], ['dst', 'a', 'b']],
  ];

  it('keys() finds the key arguments, as the server\'s COMMAND GETKEYS does', async () => {
    for (const [args, expected] of keyCases) {
      const ours = texts(table.keys(argv(...args)));
      expect(ours, args.join(' ')).to.deep.equal(expected);
      const theirs = (await client.call('COMMAND', 'GETKEYS', ...args)) as string[];
      expect(ours, `${args.join(' ')} vs COMMAND GETKEYS`).to.deep.equal(theirs);
    }
  });

  it('keyAccesses() says what each key is used for, as the server\'s COMMAND GETKEYSANDFLAGS does', async () => {
    const cases: string[][] = [
      ...keyCases.map(([args]) => args),
      ['SET', 'k', 'v'],
      ['SET', 'k', 'v', 'GET'],
      ['set', 'k', 'v', 'NX', 'get'],
      ['SET', 'k', 'v', 'GETX'],
      ['BITFIELD', 'b', 'GET', 'u8', '0'],
      ['BITFIELD', 'b', 'OVERFLOW', 'SAT', 'GET', 'u8', '0', 'GET', 'i4', '8'],
      ['BITFIELD', 'b', 'GET', 'u8', '0', 'INCRBY', 'u8', '0', '1'],
      ['BITFIELD', 'b', 'GET', 'u8'],
      ['BITFIELD_RO', 'b', 'GET', 'u8', '0'],
      ['EVAL_RO', 'return 1', '1', 'k1'],
      ['FCALL_RO', 'f', '1', 'k1'],
      ['SORT_RO', 'l', 'BY', 'w_*'],
      ['SORT', 'l'],
      ['COPY', 'a', 'b'],
      ['RENAME', 'a', 'b'],
      ['GETDEL', 'a'],
      ['APPEND', 'a', 'x'],
      ['LPUSH', 'l', 'x'],
      ['GET', 'a'],
      ['GETEX', 'a', 'PX', '10'],
      ['INCR', 'n'],
      ['EXISTS', 'a', 'b'],
      ['SMOVE', 's1', 's2', 'm'],
      ['PFMERGE', 'd', 'h1', 'h2'],
      ['SPUBLISH', 'channel', 'message'],
    ];
    const access = (read: boolean, write: boolean): string => `${read ? 'R' : ''}${write ? 'W' : ''}`;
    for (const args of cases) {
      const ours = table.keyAccesses(argv(...args)).map((entry) => `${entry.key.toString()}:${access(entry.read, entry.write)}`);
      const theirs = ((await client.call('COMMAND', 'GETKEYSANDFLAGS', ...args).catch(() => [])) as Array<[string, string[]]>).map(([key, flags]) => {
        const has = (flag: string) => flags.some((f) => f.toLowerCase() === flag);
        return `${key}:${access(has('access'), has('insert') || has('delete') || has('update'))}`;
      });
      expect(ours, `${args.join(' ')} vs COMMAND GETKEYSANDFLAGS`).to.deep.equal(theirs);
    }
    // Pinned, so the comparison above cannot pass by both sides being empty.
    const pinned = (...args: string[]) => table.keyAccesses(argv(...args)).map((entry) => `${entry.key.toString()}:${access(entry.read, entry.write)}`);
    expect(pinned('SET', 'k', 'v')).to.deep.equal(['k:W']);
    expect(pinned('SET', 'k', 'v', 'GET')).to.deep.equal(['k:RW']);
    expect(pinned('COPY', 'a', 'b')).to.deep.equal(['a:R', 'b:W']);
    expect(pinned('SORT', 'l', 'STORE', 'd')).to.deep.equal(['l:R', 'd:W']);
    expect(pinned('BITFIELD', 'b', 'GET', 'u8', '0')).to.deep.equal(['b:R']);
    expect(pinned('SPUBLISH', 'channel', 'message')).to.deep.equal([]);
  });

  it('keys(): EVAL keys come from numkeys (COMMAND says first key 0), also without key specs', () => {
    const evalInfo = table.lookup(argv('EVAL', 's', '0'))?.info;
    expect(evalInfo).to.include({ firstKey: 0, lastKey: 0, step: 0 });
    // A Redis 6 shaped reply (7 fields: no tips, key specs or subcommands).
    const legacy = CommandTable.fromCommandReply((reply as unknown[][]).map((entry) => entry.slice(0, 7)));
    for (const t of [table, legacy]) {
      expect(texts(t.keys(argv('EVAL', 'return 1', '2', 'a', 'b', 'c')))).to.deep.equal(['a', 'b']);
      expect(texts(t.keys(argv('eval', 'return 1', '0', 'a')))).to.deep.equal([]);
      expect(texts(t.keys(argv('EVAL', 'return 1', '3', 'a', 'b')))).to.deep.equal([]); // more keys than arguments
      expect(texts(t.keys(argv('EVAL', 'return 1', '-1', 'a')))).to.deep.equal([]);
      expect(texts(t.keys(argv('EVAL', 'return 1', '01', 'a')))).to.deep.equal([]); // not an integer for Redis
    }
    // first/last/step on the legacy reply
    expect(texts(legacy.keys(argv('MSET', 'a', '1', 'b', '2')))).to.deep.equal(['a', 'b']);
    expect(texts(legacy.keys(argv('DEL', 'a', 'b')))).to.deep.equal(['a', 'b']);
    expect(texts(legacy.keys(argv('LMOVE', 'a', 'b', 'LEFT', 'LEFT')))).to.deep.equal(['a', 'b']);
    // Without subcommands in the reply, the subcommand rules cannot apply: CONFIG (no flags
    // on 7.0's container) fails closed.
    expect(legacy.lookup(argv('CONFIG', 'GET', 'x'))?.info.name).to.equal('config');
    expect(legacy.lookup(argv('CONFIG', 'GET', 'x'))?.class).to.equal('rejected');
    expect(texts(table.keys(argv('NOSUCH', 'a')))).to.deep.equal([]);
    expect(texts(table.keys(argv('GET')))).to.deep.equal([]); // wrong arity: no key
  });

  it('arityOk: exact for positive arity, at least for negative', () => {
    const get = table.lookup(argv('GET', 'k'))?.info;
    const set = table.lookup(argv('SET', 'k', 'v'))?.info;
    const configGet = table.lookup(argv('CONFIG', 'GET', 'x'))?.info;
    if (get === undefined || set === undefined || configGet === undefined) return expect.fail('lookup failed');
    expect([1, 2, 3].map((n) => arityOk(get, n))).to.deep.equal([false, true, false]);
    expect([2, 3, 4, 9].map((n) => arityOk(set, n))).to.deep.equal([false, true, true, true]);
    expect([2, 3].map((n) => arityOk(configGet, n))).to.deep.equal([false, true]);
  });
});

describe('CommandTable.fromCommandReply on malformed replies', () => {
  const good = (): unknown[] => ['get', 2, ['readonly', 'fast'], 1, 1, 1, ['@read'], [], [], []];
  const withEntry = (entry: unknown): unknown[] => [good(), entry];
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an array', 'COMMAND', /the reply is a string, not an array/],
    ['null', null, /the reply is null, not an array/],
    ['an entry that is not an array', withEntry(42), /command #1 is a number, not an array/],
    ['an entry with too few fields', withEntry(['set', -3, []]), /command #1 has 3 fields, expected at least 6/],
    ['a name that is a number', withEntry([7, 2, [], 1, 1, 1]), /command #1 name is a number, not a string/],
    ['an arity that is not an integer', withEntry(['set', 'x', [], 1, 1, 1]), /'set'\) arity is a string, not an integer/],
    ['an arity of 1.5', withEntry(['set', 1.5, [], 1, 1, 1]), /'set'\) arity is 1.5, not an integer/],
    ['flags that are not an array', withEntry(['set', -3, 'write', 1, 1, 1]), /'set'\) flags is a string, not an array/],
    ['a flag that is a number', withEntry(['set', -3, ['write', 3], 1, 1, 1]), /'set'\) flags\[1\] is a number, not a string/],
    ['a duplicate command', [good(), good()], /command #1 'get' appears twice/],
    ['tips that are not an array', withEntry(['set', -3, [], 1, 1, 1, [], 'x']), /'set'\) tips is a string/],
    ['a key spec map with an odd length', withEntry(['set', -3, [], 1, 1, 1, [], [], [['flags']]]), /key spec #0 is a map with an odd number/],
    ['a key spec without begin_search', withEntry(['set', -3, [], 1, 1, 1, [], [], [['flags', []]]]), /key spec #0 lacks 'begin_search'/],
    [
      'an index begin_search without index',
      withEntry(['set', -3, [], 1, 1, 1, [], [], [['begin_search', ['type', 'index', 'spec', []], 'find_keys', ['type', 'unknown', 'spec', []]]]]),
      /begin_search spec lacks 'index'/,
    ],
    [
      'a range with keystep 0',
      withEntry(['set', -3, [], 1, 1, 1, [], [], [['begin_search', ['type', 'index', 'spec', ['index', 1]], 'find_keys', ['type', 'range', 'spec', ['lastkey', 0, 'keystep', 0, 'limit', 0]]]]]),
      /find_keys has keystep 0/,
    ],
    ['a subcommand named wrongly', withEntry(['config', -2, [], 0, 0, 0, [], [], [], [['get', -3, [], 0, 0, 0]]]), /is not a subcommand name of the form 'config\|<sub>'/],
    ['a top-level name with a bar', withEntry(['a|b', -2, [], 0, 0, 0]), /has a '\|' in a top-level name/],
    ['subcommands that are not an array', withEntry(['config', -2, [], 0, 0, 0, [], [], [], 'x']), /subcommands is a string, not an array/],
  ];
  for (const [what, reply, message] of cases) {
    it(`refuses ${what}`, () => {
      const error = thrown(() => CommandTable.fromCommandReply(reply));
      expect(error.message).to.match(/^malformed COMMAND reply: /);
      expect(error.message).to.match(message);
    });
  }

  it('accepts the smallest well-formed replies (empty; 6 fields; integers as strings)', () => {
    expect(CommandTable.fromCommandReply([]).size).to.equal(0);
    const table = CommandTable.fromCommandReply([['GET', 2, ['readonly'], 1, 1, 1], ['del', '-2', ['write'], '1', '-1', '1']]);
    expect(table.size).to.equal(2);
    expect(table.lookup(argv('get', 'k'))?.class).to.equal('read');
    expect(texts(table.keys(argv('DEL', 'a', 'b')))).to.deep.equal(['a', 'b']);
    // an unknown command without write/readonly flags fails closed
    const odd = CommandTable.fromCommandReply([['mymodule.thing', -1, ['fast'], 0, 0, 0]]);
    expect(odd.lookup(argv('MYMODULE.THING'))?.class).to.equal('rejected');
    const moduleWrite = CommandTable.fromCommandReply([['mymodule.set', 3, ['write'], 1, 1, 1]]);
    expect(moduleWrite.lookup(argv('mymodule.set', 'k', 'v'))?.class).to.equal('write');
  });
});
