// rewriteRelativeExpiry against a real redis-server 7.0 (started on a free port). Each case
// sets up database 0 and database 1 identically, runs the original command on database 0
// and the rewritten one (nowMs taken just before) on database 1, then compares the replies
// (values or exact error messages), the data (DUMP) and the deadlines (PEXPIRETIME and
// PTTL within a small tolerance). Malformed variants must come back unchanged (or, on an
// overflow, with the number pinned to LLONG_MAX) and fail the same way on both.
import { expect } from 'chai';
import { Redis } from 'ioredis';

import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';

import { rewriteRelativeExpiry } from './determinism.js';

const TOLERANCE_MS = 100n;
const LLONG_MAX = '9223372036854775807';

type Arg = string | Buffer;
const buf = (arg: Arg): Buffer => (typeof arg === 'string' ? Buffer.from(arg, 'latin1') : arg);
const argvOf = (args: readonly Arg[]): Buffer[] => args.map(buf);
const show = (argv: readonly Buffer[]): string => argv.map((b) => JSON.stringify(b.toString('latin1'))).join(' ');

// A reply as plain data: bulk strings as latin1 text, errors as { error }.
type Plain = string | number | null | Plain[] | { error: string };
function plain(value: unknown): Plain {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'number' || typeof value === 'string') return value;
  return String(value);
}

async function run(client: Redis, argv: readonly Buffer[]): Promise<Plain> {
  const [name, ...args] = argv;
  try {
    return plain(await client.callBuffer((name as Buffer).toString('latin1'), ...args));
  } catch (error) {
    return { error: (error as Error).message };
  }
}

interface KeyState {
  dump: string | null;
  pexpiretime: bigint;
  pttl: bigint;
}

async function state(client: Redis, key: string): Promise<KeyState> {
  const dump = await client.dumpBuffer(key);
  // stringNumbers: deadlines near LLONG_MAX do not fit a double
  const pexpiretime = BigInt((await client.call('PEXPIRETIME', key)) as string);
  const pttl = BigInt((await client.call('PTTL', key)) as string);
  return { dump: dump === null ? null : dump.toString('latin1'), pexpiretime, pttl };
}

function expectSameState(original: KeyState, rewritten: KeyState, what: string): void {
  expect(rewritten.dump, `${what}: data`).to.equal(original.dump);
  if (original.pexpiretime < 0n || rewritten.pexpiretime < 0n) {
    expect(rewritten.pexpiretime, `${what}: PEXPIRETIME`).to.equal(original.pexpiretime);
    expect(rewritten.pttl, `${what}: PTTL`).to.equal(original.pttl);
  } else {
    const deadline = rewritten.pexpiretime - original.pexpiretime;
    expect(deadline >= -TOLERANCE_MS && deadline <= TOLERANCE_MS, `${what}: PEXPIRETIME ${original.pexpiretime} vs ${rewritten.pexpiretime}`).to.equal(true);
    const ttl = rewritten.pttl - original.pttl;
    expect(ttl >= -TOLERANCE_MS && ttl <= TOLERANCE_MS, `${what}: PTTL ${original.pttl} vs ${rewritten.pttl}`).to.equal(true);
  }
}

// 'rewritten': the rewrite must change the command; 'unchanged': it must return it as is;
// 'pinned': the same command with the time argument (at pinAt) replaced by LLONG_MAX.
type Expect = 'rewritten' | 'unchanged' | 'pinned';
interface Case {
  setup: Arg[][];
  command: Arg[];
  expect: Expect;
  pinAt?: number;
  // replies must match; and, when set, both must be errors (or both not)
  error?: boolean;
}

describe('rewriteRelativeExpiry (redis-server 7.0)', function () {
  let server: RedisServerProcess | undefined;
  let db0: Redis;
  let db1: Redis;
  let payload: Buffer; // DUMP of the string 'payload'
  let hashPayload: Buffer;
  const later = String(Date.now() + 500_000); // a fixed deadline, the same bytes on both databases
  const laterSeconds = String(Math.floor(Date.now() / 1000) + 500);

  before(async () => {
    server = await RedisServerProcess.start();
    const options = { port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 0, stringNumbers: true };
    db0 = new Redis({ ...options, db: 0 });
    db1 = new Redis({ ...options, db: 1 });
    await db0.set('p', 'payload');
    payload = (await db0.dumpBuffer('p')) as Buffer;
    await db0.hset('ph', 'f', 'v');
    hashPayload = (await db0.dumpBuffer('ph')) as Buffer;
  });

  after(async () => {
    db0?.disconnect();
    db1?.disconnect();
    if (server !== undefined) await server.stop();
  });

  // Setups: k a string without TTL; t a string with a TTL 500 s away; h a hash; m missing.
  const plainKey: Arg[][] = [['SET', 'k', 'v']];
  const withTtl = (): Arg[][] => [['SET', 'k', 'v', 'PXAT', later]];
  const all = (): Arg[][] => [['SET', 'k', 'v'], ['SET', 't', 'v', 'PXAT', later], ['HSET', 'h', 'f', 'v']];
  const keys = ['k', 't', 'h', 'm', 'r'];

  async function check(c: Case): Promise<void> {
    await db0.flushall();
    for (const step of c.setup) {
      await run(db0, argvOf(step));
      await run(db1, argvOf(step));
    }
    const original = argvOf(c.command);
    const nowMs = Date.now();
    const rewritten = rewriteRelativeExpiry(original, nowMs);
    const what = show(original);
    if (c.expect === 'unchanged') expect(show(rewritten), `${what} must stay unchanged`).to.equal(what);
    if (c.expect === 'rewritten') expect(show(rewritten), `${what} must be rewritten`).to.not.equal(what);
    if (c.expect === 'pinned') {
      const pinned = original.slice();
      pinned[c.pinAt as number] = Buffer.from(LLONG_MAX);
      expect(show(rewritten), `${what} must only pin its time to LLONG_MAX`).to.equal(show(pinned));
    }
    const replyOriginal = await run(db0, original);
    const replyRewritten = await run(db1, rewritten);
    expect(replyRewritten, `${what} -> ${show(rewritten)}: reply`).to.deep.equal(replyOriginal);
    if (c.error !== undefined) {
      const isError = typeof replyOriginal === 'object' && replyOriginal !== null && !Array.isArray(replyOriginal);
      expect(isError, `${what}: ${JSON.stringify(replyOriginal)}`).to.equal(c.error);
    }
    for (const key of keys) expectSameState(await state(db0, key), await state(db1, key), `${what} -> ${show(rewritten)}, key ${key}`);
  }

  const cases = (): Array<[string, Case]> => {
    const ok = (setup: Arg[][], ...command: Arg[]): Case => ({ setup, command, expect: 'rewritten', error: false });
    const same = (setup: Arg[][], ...command: Arg[]): Case => ({ setup, command, expect: 'unchanged', error: false });
    const bad = (setup: Arg[][], ...command: Arg[]): Case => ({ setup, command, expect: 'unchanged', error: true });
    // the time argument: the one after EX/PX, else argv[2]
    const pinned = (setup: Arg[][], ...command: Arg[]): Case => {
      let pinAt = 2;
      command.forEach((arg, i) => {
        if (typeof arg === 'string' && /^(ex|px)$/i.test(arg)) pinAt = i + 1;
      });
      return { setup, command, expect: 'pinned', pinAt, error: true };
    };
    const list: Case[] = [
      // EXPIRE and PEXPIRE -> PEXPIREAT
      ok(all(), 'EXPIRE', 'k', '100'),
      ok(all(), 'expire', 'k', '100'),
      ok(all(), 'EXPIRE', 'm', '100'),
      ok(all(), 'EXPIRE', 'k', '100', 'NX'),
      ok(all(), 'EXPIRE', 't', '100', 'nx'),
      ok(all(), 'EXPIRE', 'k', '100', 'XX'),
      ok(all(), 'EXPIRE', 't', '100', 'Xx'),
      ok(all(), 'EXPIRE', 't', '1000', 'GT'),
      ok(all(), 'EXPIRE', 't', '100', 'GT'),
      ok(all(), 'EXPIRE', 'k', '100', 'GT'),
      ok(all(), 'EXPIRE', 't', '100', 'lt'),
      ok(all(), 'EXPIRE', 'k', '100', 'LT'),
      ok(all(), 'EXPIRE', 't', '1000', 'XX', 'GT'),
      ok(all(), 'EXPIRE', 'k', '100', 'NX', 'nx'),
      ok(all(), 'EXPIRE', 't', '100', Buffer.from('nx\0junk')), // Redis reads options up to the NUL
      ok(all(), 'EXPIRE', 'k', '0'),
      ok(all(), 'EXPIRE', 'k', '-5'),
      ok(all(), 'EXPIRE', 'h', '-9223372036854775'),
      ok(all(), 'EXPIRE', 'h', '100'),
      ok(all(), 'PEXPIRE', 'k', '1500'),
      ok(all(), 'pexpire', 't', '1500', 'LT'),
      ok(all(), 'PEXPIRE', 'k', '-1'),
      ok(all(), 'PEXPIRE', 'k', '-9223372036854775808'),
      ok(all(), 'PEXPIRE', 'k', '9223370000000000000'),
      // SETEX and PSETEX -> SET ... PXAT
      ok(all(), 'SETEX', 'k', '100', 'v2'),
      ok(all(), 'setex', 'm', '100', 'v2'),
      ok(all(), 'SETEX', 'h', '100', 'v2'),
      ok(all(), 'PSETEX', 't', '1500', 'v2'),
      // SET with EX / PX -> PXAT, the other options kept
      ok(all(), 'SET', 'k', 'v2', 'EX', '100'),
      ok(all(), 'SET', 'k', 'v2', 'PX', '1500'),
      ok(all(), 'set', 'k', 'v2', 'ex', '100'),
      ok(all(), 'SET', 'k', 'v2', 'Ex', '100', 'nX'),
      ok(all(), 'SET', 'm', 'v2', 'NX', 'EX', '100'),
      ok(all(), 'SET', 'k', 'v2', 'XX', 'PX', '1500'),
      ok(all(), 'SET', 'm', 'v2', 'XX', 'PX', '1500'),
      ok(all(), 'SET', 'k', 'v2', 'EX', '100', 'GET'),
      ok(all(), 'SET', 't', 'v2', 'GET', 'PX', '1500'),
      ok(all(), 'SET', 'k', 'v2', 'NX', 'GET', 'EX', '100'),
      ok(all(), 'SET', 'm', 'v2', 'GET', 'GET', 'EX', '100'),
      ok(all(), 'SET', 'k', 'v2', 'EX', '10', 'EX', '100'),
      ok(all(), 'SET', 'k', 'v2', 'EX', 'abc', 'EX', '100'), // Redis keeps the last EX only
      ok(all(), 'SET', 'k', 'v2', Buffer.from('ex\0zz'), '100'),
      ok(all(), 'SET', 'k', 'v2', 'EX', '9223370000000'),
      { ...ok(all(), 'SET', 'h', 'v2', 'GET', 'EX', '100'), error: true }, // WRONGTYPE on both
      // GETEX with EX / PX -> PXAT
      ok(all(), 'GETEX', 'k', 'EX', '100'),
      ok(all(), 'getex', 't', 'px', '1500'),
      ok(all(), 'GETEX', 'm', 'EX', '100'),
      ok(all(), 'GETEX', 'k', 'EX', '10', 'EX', '100'),
      { ...ok(all(), 'GETEX', 'h', 'EX', '100'), error: true }, // WRONGTYPE on both
      // RESTORE with a relative TTL -> ABSTTL
      ok(all(), 'RESTORE', 'r', '5000', payload),
      ok(all(), 'restore', 'k', '5000', payload, 'REPLACE'),
      ok(all(), 'RESTORE', 'r', '5000', hashPayload, 'IDLETIME', '10'),
      ok(all(), 'RESTORE', 'r', '5000', payload, 'FREQ', '5', 'replace'),
      { ...ok(all(), 'RESTORE', 'k', '5000', payload), error: true }, // BUSYKEY on both
      { ...ok(all(), 'RESTORE', 'r', '5000', 'not a payload'), error: true }, // bad payload on both

      // Nothing relative: unchanged
      same(all(), 'EXPIREAT', 'k', laterSeconds),
      same(all(), 'PEXPIREAT', 'k', later, 'NX'),
      same(all(), 'SET', 'k', 'v2'),
      same(all(), 'SET', 'k', 'v2', 'EXAT', laterSeconds),
      same(all(), 'SET', 'k', 'v2', 'PXAT', later, 'GET'),
      same(all(), 'SET', 't', 'v2', 'KEEPTTL'),
      same(all(), 'GETEX', 't'),
      same(all(), 'GETEX', 't', 'PERSIST'),
      same(all(), 'GETEX', 'k', 'EXAT', laterSeconds),
      same(all(), 'GETEX', 'k', 'PXAT', later),
      same(all(), 'RESTORE', 'r', '0', payload),
      same(all(), 'RESTORE', 'r', later, payload, 'ABSTTL'),
      same(all(), 'PERSIST', 't'),
      same(all(), 'GET', 'k'),

      // Malformed: unchanged, and the same error on both
      bad(plainKey, 'EXPIRE', 'k'),
      bad(plainKey, 'EXPIRE', 'k', 'abc'),
      bad(plainKey, 'EXPIRE', 'k', '1.5'),
      bad(plainKey, 'EXPIRE', 'k', ' 1'),
      bad(plainKey, 'EXPIRE', 'k', '+1'),
      bad(plainKey, 'EXPIRE', 'k', '01'),
      bad(plainKey, 'EXPIRE', 'k', '-0'),
      bad(plainKey, 'EXPIRE', 'k', ''),
      bad(plainKey, 'EXPIRE', 'k', '10\0'),
      bad(plainKey, 'EXPIRE', 'k', '99999999999999999999'),
      bad(plainKey, 'EXPIRE', 'k', '100', 'NX', 'XX'),
      bad(plainKey, 'EXPIRE', 'k', '100', 'NX', 'GT'),
      bad(plainKey, 'EXPIRE', 'k', '100', 'gt', 'LT'),
      bad(plainKey, 'EXPIRE', 'k', '100', 'FOO'),
      bad(plainKey, 'EXPIRE', 'm', 'abc', 'FOO'),
      bad(plainKey, 'EXPIRE', 'k', '9223372036854776'),
      bad(plainKey, 'EXPIRE', 'k', '-9223372036854776'),
      pinned(plainKey, 'EXPIRE', 'k', '9223372036854775'),
      pinned(plainKey, 'EXPIRE', 'm', '9223372036854774'),
      pinned(plainKey, 'PEXPIRE', 'k', LLONG_MAX),
      pinned(plainKey, 'PEXPIRE', 'k', '9223372036000000000', 'XX'),
      bad(plainKey, 'PEXPIRE', 'k', '9223372036854775808'),
      bad(plainKey, 'SETEX', 'k', '0', 'v'),
      bad(plainKey, 'SETEX', 'k', '-1', 'v'),
      bad(plainKey, 'SETEX', 'k', 'abc', 'v'),
      bad(plainKey, 'SETEX', 'k', '10'),
      bad(plainKey, 'SETEX', 'k', '10', 'v', 'extra'),
      bad(plainKey, 'SETEX', 'k', '9223372036854776', 'v'),
      pinned(plainKey, 'SETEX', 'k', '9223372036854775', 'v'),
      bad(plainKey, 'PSETEX', 'k', '0', 'v'),
      bad(plainKey, 'PSETEX', 'k', '1e3', 'v'),
      pinned(plainKey, 'PSETEX', 'k', LLONG_MAX, 'v'),
      pinned(plainKey, 'PSETEX', 'k', '9223372036000000000', 'v'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '0'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '-1'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', 'abc'),
      bad(plainKey, 'SET', 'k', 'v2', 'PX', '1.5'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '10', 'PX', '10'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '10', 'KEEPTTL'),
      bad(plainKey, 'SET', 'k', 'v2', 'KEEPTTL', 'EX', '10'),
      bad(plainKey, 'SET', 'k', 'v2', 'NX', 'XX', 'EX', '10'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '10', 'EXAT', '5'),
      bad(plainKey, 'SET', 'k', 'v2', 'PXAT', '5', 'PX', '10'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '10', 'FOO'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '10', 'PERSIST'),
      bad(plainKey, 'SET', 'k', 'v2', 'PX', '0'),
      bad(plainKey, 'SET', 'k', 'v2', 'EX', '9223372036854776'),
      pinned(plainKey, 'SET', 'k', 'v2', 'EX', '9223372036854775'),
      pinned(plainKey, 'SET', 'k', 'v2', 'NX', 'PX', LLONG_MAX, 'GET'),
      pinned(plainKey, 'SET', 'k', 'v2', 'EX', '1', 'EX', '9223372036854775'),
      bad(plainKey, 'SET', 'k'),
      bad(plainKey, 'GETEX', 'k', 'EX', '0'),
      { ...bad(plainKey, 'GETEX', 'm', 'EX', '0'), error: false }, // a missing key answers nil before the check
      bad(all(), 'GETEX', 'h', 'EX', '0'),
      bad(plainKey, 'GETEX', 'k', 'EX', '10', 'PERSIST'),
      bad(plainKey, 'GETEX', 'k', 'PERSIST', 'EX', '10'),
      bad(plainKey, 'GETEX', 'k', 'NX', 'EX', '10'),
      bad(plainKey, 'GETEX', 'k', 'EX', 'abc'),
      bad(plainKey, 'GETEX', 'k', 'EX', '10', 'PX', '10'),
      bad(plainKey, 'GETEX', 'k', 'KEEPTTL'),
      bad(plainKey, 'GETEX'),
      pinned(plainKey, 'GETEX', 'k', 'EX', '9223372036854775'),
      bad(plainKey, 'RESTORE', 'r', '-1', payload),
      bad(plainKey, 'RESTORE', 'r', 'abc', payload),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'FOO'),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'IDLETIME'),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'IDLETIME', '-1'),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'IDLETIME', 'x'),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'FREQ', '256'),
      bad(plainKey, 'RESTORE', 'r', '100', payload, 'FREQ', '1', 'IDLETIME', '1'),
      bad(plainKey, 'RESTORE', 'r', '100'),
      { ...pinned(plainKey, 'RESTORE', 'r', LLONG_MAX, payload), error: false }, // wraps into the past: OK, no key
      { ...pinned(plainKey, 'RESTORE', 'k', '9223372036000000000', payload, 'REPLACE'), error: false }, // and deletes k
    ];
    return list.map((c) => [show(argvOf(c.command)), c]);
  };

  it('gives the same replies, data and deadlines as the original for every form, and identical errors for every malformed variant', async function () {
    this.timeout(15_000);
    const all = cases();
    expect(all.length).to.be.greaterThan(120);
    for (const [, c] of all) await check(c);
  });

  it('makes the deadline independent of when a replica applies it', async () => {
    await db0.flushall();
    const command = argvOf(['SET', 'k', 'v', 'EX', '100']);
    const rewritten = rewriteRelativeExpiry(command, Date.now());
    const original = command.map((arg, i) => (i === 1 ? Buffer.from('k2') : arg));
    expect(await run(db0, rewritten)).to.equal('OK');
    expect(await run(db0, original)).to.equal('OK');
    await new Promise((resolve) => setTimeout(resolve, 30)); // a replica that applies 30 ms later
    expect(await run(db1, rewritten)).to.equal('OK');
    expect(await run(db1, original)).to.equal('OK');
    const [early, late] = [await state(db0, 'k'), await state(db1, 'k')];
    expect(early.pexpiretime > 0n).to.equal(true);
    expect(late.pexpiretime).to.equal(early.pexpiretime);
    const drift = (await state(db1, 'k2')).pexpiretime - (await state(db0, 'k2')).pexpiretime;
    expect(drift >= 25n, `the original command drifts with the apply time (${drift} ms)`).to.equal(true);
  });
});

describe('rewriteRelativeExpiry (shape of the rewrites)', () => {
  const now = 1_700_000_000_000;
  const rw = (...args: string[]): string[] => rewriteRelativeExpiry(argvOf(args), now).map((b) => b.toString('latin1'));

  it('writes the documented forms', () => {
    expect(rw('EXPIRE', 'k', '10', 'NX')).to.deep.equal(['PEXPIREAT', 'k', '1700000010000', 'NX']);
    expect(rw('pexpire', 'k', '-10')).to.deep.equal(['PEXPIREAT', 'k', '1699999999990']);
    expect(rw('SETEX', 'k', '10', 'v')).to.deep.equal(['SET', 'k', 'v', 'PXAT', '1700000010000']);
    expect(rw('PSETEX', 'k', '10', 'v')).to.deep.equal(['SET', 'k', 'v', 'PXAT', '1700000000010']);
    expect(rw('SET', 'k', 'v', 'NX', 'EX', '10', 'GET')).to.deep.equal(['SET', 'k', 'v', 'NX', 'GET', 'PXAT', '1700000010000']);
    expect(rw('SET', 'k', 'v', 'PX', '1', 'px', '5')).to.deep.equal(['SET', 'k', 'v', 'PXAT', '1700000000005']);
    expect(rw('GETEX', 'k', 'PX', '5')).to.deep.equal(['GETEX', 'k', 'PXAT', '1700000000005']);
    expect(rw('RESTORE', 'k', '10', 'p', 'REPLACE')).to.deep.equal(['RESTORE', 'k', '1700000000010', 'p', 'REPLACE', 'ABSTTL']);
    expect(rw('EXPIRE', 'k', '9223372036854775')).to.deep.equal(['EXPIRE', 'k', LLONG_MAX]);
  });

  it('returns a new array with the same Buffers for what it does not rewrite, and checks nowMs', () => {
    const argv = argvOf(['GET', 'k']);
    const result = rewriteRelativeExpiry(argv, now);
    expect(result).to.not.equal(argv);
    expect(result[1]).to.equal(argv[1]);
    expect(rewriteRelativeExpiry([], now)).to.deep.equal([]);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 60]) expect(() => rewriteRelativeExpiry(argv, bad), String(bad)).to.throw(RangeError);
  });
});
