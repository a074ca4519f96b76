// What a command does to each of its keys, for the ACL's read/write key selectors (%R~,
// %W~): read means it may see the value (a key spec's ACCESS flag), write that it may
// change it (INSERT, DELETE or UPDATE). Most commands say so in their key specs
// (command_table.ts); this file holds what the specs leave to code, as Redis does.
import { optIs } from './redis_args.js';

export interface KeyAccessKind {
  read: boolean;
  write: boolean;
}

export interface KeyAccess extends KeyAccessKind {
  key: Buffer;
}

export const READ_WRITE: KeyAccessKind = Object.freeze({ read: true, write: true });
const READ_ONLY: KeyAccessKind = Object.freeze({ read: true, write: false });
const WRITE_ONLY: KeyAccessKind = Object.freeze({ read: false, write: true });

/**
 * The access of a command whose key spec says VARIABLE_FLAGS, as its getkeys procedure
 * in Redis decides it; undefined for a command this file does not know (then both).
 */
export function variableKeyAccess(name: string, argv: ReadonlyArray<Buffer>): KeyAccessKind | undefined {
  if (name === 'set') return setKeyAccess(argv);
  if (name === 'bitfield') return bitfieldKeyAccess(argv);
  return undefined;
}

// setGetKeys: with a GET option (exactly "get", any case, from the fourth argument on) SET
// reads the old value; without, it only overwrites.
function setKeyAccess(argv: ReadonlyArray<Buffer>): KeyAccessKind {
  for (let i = 3; i < argv.length; i++) if (optIs(argv[i] as Buffer, 'get')) return READ_WRITE;
  return WRITE_ONLY;
}

// bitfieldGetKeys: only GET (and OVERFLOW) subcommands read; SET, INCRBY or anything it
// cannot read as one of those (a syntax error included) counts as a write.
function bitfieldKeyAccess(argv: ReadonlyArray<Buffer>): KeyAccessKind {
  for (let i = 2; i < argv.length; i++) {
    const remaining = argv.length - i - 1;
    const arg = argv[i] as Buffer;
    if (optIs(arg, 'get') && remaining >= 2) i += 2;
    else if (optIs(arg, 'overflow') && remaining >= 1) i += 1;
    else return READ_WRITE;
  }
  return READ_ONLY;
}

/**
 * The keys a hand-kept extractor found (command_table.ts), flagged as the command's key
 * specs flag them: the EVAL and FCALL families RW (their _RO forms read only); SORT reads
 * the sorted key and writes the STORE destination (sortGetKeys' flags), SORT_RO reads.
 */
export function extractorKeyAccesses(name: string, keys: readonly Buffer[]): KeyAccess[] {
  if (name === 'sort') return keys.map((key, i) => ({ key, ...(i === 0 ? READ_ONLY : WRITE_ONLY) }));
  const access = name.endsWith('_ro') ? READ_ONLY : READ_WRITE;
  return keys.map((key) => ({ key, ...access }));
}
