// Determinism rewrites: a relative expiration ("in 10 seconds") means a different instant
// on every replica that applies it, so the leader turns it into an absolute one with its
// own clock before the command enters the log:
//
//   EXPIRE key s [NX|XX|GT|LT]...   -> PEXPIREAT key now+s*1000 [same options]
//   PEXPIRE key ms [NX|XX|GT|LT]... -> PEXPIREAT key now+ms [same options]
//   SETEX key s value               -> SET key value PXAT now+s*1000
//   PSETEX key ms value             -> SET key value PXAT now+ms
//   SET key value [opts] EX s|PX ms -> SET key value [opts] PXAT now+...   (NX XX GET kept)
//   GETEX key EX s|PX ms            -> GETEX key PXAT now+...
//   RESTORE key ttl payload [opts]  -> RESTORE key now+ttl payload [opts] ABSTTL   (ttl > 0)
//
// Everything else is returned unchanged: EXPIREAT, PEXPIREAT, SET/GETEX with EXAT, PXAT,
// KEEPTTL or PERSIST, RESTORE with ABSTTL or ttl 0, and every command Redis would refuse
// (wrong arity, unknown or conflicting options, a value that is not an integer, zero or
// negative where Redis refuses it): every replica then fails with Redis's own error. The
// parsers below follow Redis 7.0 (t_string.c, expire.c, cluster.c) step by step, including
// its C details: option names compare case-insensitively up to the first NUL byte, and
// integers follow string2ll (no '+', no spaces, no leading zeros, at most 20 bytes).
//
// Overflow: where Redis adds its clock and finds an overflow, it answers "invalid expire
// time" (RESTORE instead wraps into the past: OK, no key). The leader makes the same
// check with its own clock; when it overflows, the number is replaced by LLONG_MAX, which
// overflows on any clock, so every replica fails (or, for RESTORE, skips the key) exactly
// as Redis would have at the leader, whatever its own clock says.
//
// Depends on Node's standard library only (see README.md).

import { commandName, optIs } from './redis_args.js';

const LLONG_MAX = 9223372036854775807n;
const LLONG_MIN = -9223372036854775808n;
const LLONG_MAX_TEXT = Buffer.from(LLONG_MAX.toString());

/**
 * Rewrites a 'write-rewrite' command so that every replica gets the same effect: relative
 * expirations become absolute, using the leader's clock `nowMs` (Unix time in ms). Returns
 * a new array; the argument Buffers are shared, not copied.
 */
export function rewriteRelativeExpiry(argv: ReadonlyArray<Buffer>, nowMs: number): Buffer[] {
  if (!Number.isSafeInteger(nowMs) || nowMs <= 0) throw new RangeError(`rewriteRelativeExpiry: nowMs must be a positive integer, not ${nowMs}`);
  const now = BigInt(nowMs);
  const first = argv[0];
  switch (first === undefined ? undefined : commandNameShort(first)) {
    case 'expire':
      return rewriteExpire(argv, now, 1000n);
    case 'pexpire':
      return rewriteExpire(argv, now, 1n);
    case 'setex':
      return rewriteSetex(argv, now, 1000n);
    case 'psetex':
      return rewriteSetex(argv, now, 1n);
    case 'set':
      return rewriteStringOptions(argv, now, 3);
    case 'getex':
      return rewriteStringOptions(argv, now, 2);
    case 'restore':
      return rewriteRestore(argv, now);
    default:
      return argv.slice();
  }
}

/** EXPIRE / PEXPIRE, as expireGenericCommand with parseExtendedExpireArgumentsOrReply. */
function rewriteExpire(argv: ReadonlyArray<Buffer>, now: bigint, unit: bigint): Buffer[] {
  if (argv.length < 3) return argv.slice(); // arity
  let nx = false, xx = false, gt = false, lt = false;
  for (let j = 3; j < argv.length; j++) {
    const opt = argv[j] as Buffer;
    if (optIs(opt, 'nx')) nx = true;
    else if (optIs(opt, 'xx')) xx = true;
    else if (optIs(opt, 'gt')) gt = true;
    else if (optIs(opt, 'lt')) lt = true;
    else return argv.slice(); // "Unsupported option ..."
  }
  if ((nx && (xx || gt || lt)) || (gt && lt)) return argv.slice(); // "... are not compatible"
  let when = string2ll(argv[2] as Buffer);
  if (when === undefined) return argv.slice(); // "value is not an integer or out of range"
  if (unit !== 1n) {
    if (when > LLONG_MAX / unit || when < LLONG_MIN / unit) return argv.slice(); // "invalid expire time", on any clock
    when *= unit;
  }
  if (when > LLONG_MAX - now) return pin(argv, 2); // overflows with the leader's clock
  // A negative or past time deletes the key on every replica, as EXPIRE would.
  return [Buffer.from('PEXPIREAT'), argv[1] as Buffer, Buffer.from((when + now).toString()), ...argv.slice(3)];
}

/** SETEX / PSETEX key time value: setGenericCommand with OBJ_EX / OBJ_PX. */
function rewriteSetex(argv: ReadonlyArray<Buffer>, now: bigint, unit: bigint): Buffer[] {
  if (argv.length !== 4) return argv.slice(); // arity
  const absolute = absoluteExpire(argv[2] as Buffer, unit, now);
  if (absolute === 'invalid') return argv.slice();
  if (absolute === 'overflow') return pin(argv, 2);
  return [Buffer.from('SET'), argv[1] as Buffer, argv[3] as Buffer, Buffer.from('PXAT'), Buffer.from(absolute.toString())];
}

const NX = 1, XX = 2, GET = 4, KEEPTTL = 8, PERSIST = 16, EX = 32, PX = 64, EXAT = 128, PXAT = 256;

/**
 * SET key value [options] (options from 3) or GETEX key [options] (options from 2), as
 * parseExtendedStringArgumentsOrReply: EX/PX and their values are dropped (all of them:
 * Redis accepts a repeated EX and keeps the last), PXAT <absolute> is appended, and the
 * other options keep their order.
 */
function rewriteStringOptions(argv: ReadonlyArray<Buffer>, now: bigint, start: 2 | 3): Buffer[] {
  if (argv.length < start) return argv.slice(); // arity
  const isSet = start === 3;
  let flags = 0;
  let expireAt = -1; // index of the value of the last EX/PX/EXAT/PXAT
  const dropped = new Set<number>();
  for (let j = start; j < argv.length; j++) {
    const opt = argv[j] as Buffer;
    const hasNext = j < argv.length - 1;
    const has = (mask: number): boolean => (flags & mask) !== 0;
    if (optIs(opt, 'nx') && !has(XX) && isSet) {
      flags |= NX;
    } else if (optIs(opt, 'xx') && !has(NX) && isSet) {
      flags |= XX;
    } else if (optIs(opt, 'get') && isSet) {
      flags |= GET;
    } else if (optIs(opt, 'keepttl') && !has(PERSIST | EX | EXAT | PX | PXAT) && isSet) {
      flags |= KEEPTTL;
    } else if (optIs(opt, 'persist') && !isSet && !has(EX | EXAT | PX | PXAT | KEEPTTL)) {
      flags |= PERSIST;
    } else if (optIs(opt, 'ex') && !has(KEEPTTL | PERSIST | EXAT | PX | PXAT) && hasNext) {
      flags |= EX;
      dropped.add(j).add(j + 1);
      expireAt = ++j;
    } else if (optIs(opt, 'px') && !has(KEEPTTL | PERSIST | EX | EXAT | PXAT) && hasNext) {
      flags |= PX;
      dropped.add(j).add(j + 1);
      expireAt = ++j;
    } else if (optIs(opt, 'exat') && !has(KEEPTTL | PERSIST | EX | PX | PXAT) && hasNext) {
      flags |= EXAT;
      expireAt = ++j;
    } else if (optIs(opt, 'pxat') && !has(KEEPTTL | PERSIST | EX | EXAT | PX) && hasNext) {
      flags |= PXAT;
      expireAt = ++j;
    } else {
      return argv.slice(); // "syntax error"
    }
  }
  if ((flags & (EX | PX)) === 0) return argv.slice(); // nothing relative
  const absolute = absoluteExpire(argv[expireAt] as Buffer, (flags & EX) !== 0 ? 1000n : 1n, now);
  if (absolute === 'invalid') return argv.slice();
  if (absolute === 'overflow') return pin(argv, expireAt);
  const kept = argv.filter((_, j) => !dropped.has(j));
  return [...kept, Buffer.from('PXAT'), Buffer.from(absolute.toString())];
}

/** getExpireMillisecondsOrReply for a relative EX (unit 1000) or PX (unit 1) value. */
function absoluteExpire(arg: Buffer, unit: bigint, now: bigint): bigint | 'invalid' | 'overflow' {
  const value = string2ll(arg);
  if (value === undefined) return 'invalid'; // "value is not an integer or out of range"
  if (value <= 0n || value > LLONG_MAX / unit) return 'invalid'; // "invalid expire time", on any clock
  const absolute = value * unit + now;
  return absolute > LLONG_MAX ? 'overflow' : absolute;
}

/** RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], as restoreCommand. */
function rewriteRestore(argv: ReadonlyArray<Buffer>, now: bigint): Buffer[] {
  if (argv.length < 4) return argv.slice(); // arity
  let absttl = false;
  let idle = false;
  let freq = false;
  for (let j = 4; j < argv.length; j++) {
    const opt = argv[j] as Buffer;
    const additional = argv.length - j - 1;
    if (optIs(opt, 'replace')) {
      // flag
    } else if (optIs(opt, 'absttl')) {
      absttl = true;
    } else if (optIs(opt, 'idletime') && additional >= 1 && !freq) {
      const value = string2ll(argv[++j] as Buffer);
      if (value === undefined || value < 0n) return argv.slice(); // not an integer / "Invalid IDLETIME value"
      idle = true;
    } else if (optIs(opt, 'freq') && additional >= 1 && !idle) {
      const value = string2ll(argv[++j] as Buffer);
      if (value === undefined || value < 0n || value > 255n) return argv.slice(); // "Invalid FREQ value"
      freq = true;
    } else {
      return argv.slice(); // "syntax error"
    }
  }
  if (absttl) return argv.slice(); // already absolute
  const ttl = string2ll(argv[2] as Buffer);
  if (ttl === undefined || ttl <= 0n) return argv.slice(); // error, or 0: no expiration
  if (ttl > LLONG_MAX - now) return pin(argv, 2); // Redis wraps into the past: OK, and no key
  return [argv[0] as Buffer, argv[1] as Buffer, Buffer.from((ttl + now).toString()), ...argv.slice(3), Buffer.from('ABSTTL')];
}

/** The command with argument `index` replaced by LLONG_MAX: an overflow on any clock. */
function pin(argv: ReadonlyArray<Buffer>, index: number): Buffer[] {
  const pinned = argv.slice();
  pinned[index] = LLONG_MAX_TEXT;
  return pinned;
}


/** Redis's string2ll: '-' but no '+', no spaces, no leading zeros ("-0" too), under 21 bytes, in range. */
function string2ll(arg: Buffer): bigint | undefined {
  if (arg.length === 0 || arg.length >= 21) return undefined;
  const text = arg.toString('latin1');
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined;
  const value = BigInt(text);
  return value > LLONG_MAX || value < LLONG_MIN ? undefined : value;
}

// No name the rewrites handle is longer than 16 bytes.
function commandNameShort(arg: Buffer): string | undefined {
  return commandName(arg, 16);
}
