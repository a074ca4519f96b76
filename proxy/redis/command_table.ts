// The command table: what the proxy knows about each Redis command, read at start-up from
// the backend's COMMAND reply (the source of truth for arity, flags, tips and key
// positions), with the hand-kept rules below for what the flags miss. Every command gets
// a class that tells the session how to run it through a replicated proxy: served
// locally, ordered through the log as is, rewritten first, replicated as its effects,
// handled by the proxy, or refused.
//
// Depends on Node's standard library only (see README.md).

import { commandName, optIs } from './redis_args.js';
import { extractorKeyAccesses, READ_WRITE, variableKeyAccess, type KeyAccess, type KeyAccessKind } from './key_access.js';

export type CommandClass =
  | 'read' // served from the local backend (after the ordering rules the session applies)
  | 'write' // replicated through the log as is
  | 'write-rewrite' // replicated after a determinism rewrite at the leader (relative expirations): determinism.ts
  | 'write-effects' // nondeterministic write: executed on the leader under a write barrier, replicated as its effects
  | 'transaction' // MULTI EXEC DISCARD WATCH UNWATCH
  | 'script' // EVAL*, FCALL*, SCRIPT LOAD/FLUSH, FUNCTION LOAD/DELETE/FLUSH/RESTORE: through the log as is unless flags has 'readonly'
  | 'blocking' // blocking pops, XREAD/XREADGROUP with BLOCK, WAIT, WAITAOF
  | 'pubsub' // (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH, PUBSUB ...
  | 'connection' // handled by the proxy itself (PING, AUTH, HELLO, SELECT, CLIENT ..., COMMAND ...)
  | 'admin-local' // answered at once by the local backend, no ordering, nothing replicated (INFO, TIME, CONFIG GET ...)
  | 'rejected'; // dangerous or meaningless through a replicated proxy

/** Every class, in the order the summary prints them. */
export const COMMAND_CLASSES: readonly CommandClass[] = [
  'read',
  'write',
  'write-rewrite',
  'write-effects',
  'transaction',
  'script',
  'blocking',
  'pubsub',
  'connection',
  'admin-local',
  'rejected',
];

export interface CommandInfo {
  /** Lower case: 'set', or 'config|set' for a subcommand. */
  readonly name: string;
  /** As COMMAND reports it: n means exactly n arguments (the name included), -n at least n. */
  readonly arity: number;
  readonly flags: ReadonlySet<string>;
  readonly firstKey: number;
  readonly lastKey: number;
  readonly step: number;
  readonly tips: readonly string[];
  /** ACL categories, as COMMAND gives them ('@read', '@string'); empty before Redis 6. */
  readonly categories: ReadonlySet<string>;
  /** The class without looking at the arguments; `CommandTable.lookup` gives the authoritative one. */
  readonly class: CommandClass;
}

/** Whether `argc` arguments (the command name, and the subcommand name, included) satisfy the arity. */
export function arityOk(info: CommandInfo, argc: number): boolean {
  return info.arity >= 0 ? argc === info.arity : argc >= -info.arity;
}

// ---------------------------------------------------------------------------------------
// Hand-kept rules. The flags and tips of COMMAND classify most commands (see `classify`);
// these are the exceptions, each with the reason the flags get it wrong. Precedence, first
// match wins:
//   1. HAND_KEPT exact name ('config|set')
//   2. any '<container>|help' subcommand -> 'admin-local' (it only prints the backend's text)
//   3. HAND_KEPT family ('client|*': every subcommand of CLIENT)
//   4. a container (a command with subcommands) reached without a known subcommand ->
//      'admin-local': it can only produce the backend's arity or unknown-subcommand error,
//      the same on every replica
//   5. the flags: pubsub -> 'pubsub'; blocking -> 'blocking'; admin -> 'rejected';
//      write -> 'write-effects' if the tips say nondeterministic_output, else 'write';
//      readonly -> 'read'; anything else -> 'rejected' (fail closed: a command we cannot
//      classify, such as an unknown module command with no flags, might change state
//      outside the log)
// Then ARGV_RULES (further below) refine the class from the arguments in `lookup`.
// Names that the backend does not report (e.g. WAITAOF on 7.0) are simply unused.
// ---------------------------------------------------------------------------------------

type HandRule = readonly [name: string, cls: CommandClass, why: string];

const HAND_KEPT_RULES: readonly HandRule[] = [
  // Transactions: the session queues MULTI ... EXEC and ships the block as one log entry.
  ['multi', 'transaction', 'opens a transaction the session queues and replicates as one entry'],
  ['exec', 'transaction', 'closes a transaction'],
  ['discard', 'transaction', 'drops a queued transaction'],
  ['watch', 'transaction', 'optimistic lock checked at EXEC against the ordered log'],
  ['unwatch', 'transaction', 'releases WATCH'],

  // Scripts and functions: no 'write' flag on EVAL/FCALL (the script decides), yet they
  // must go through the log; rule documented in README: scripts must be deterministic.
  ['eval', 'script', 'may write; replicated as is (scripts must be deterministic)'],
  ['evalsha', 'script', 'may write; replicated as is (scripts must be deterministic)'],
  ['fcall', 'script', 'may write; replicated as is (functions must be deterministic)'],
  ['eval_ro', 'script', "read-only script ('readonly' flag): the session may serve it locally"],
  ['evalsha_ro', 'script', "read-only script ('readonly' flag): the session may serve it locally"],
  ['fcall_ro', 'script', "read-only function ('readonly' flag): the session may serve it locally"],
  ['script|load', 'script', 'no write flag, but every replica needs the script for EVALSHA'],
  ['script|flush', 'script', 'no write flag, but empties the script cache of every replica'],
  ['function|load', 'script', 'changes the function libraries of every replica'],
  ['function|delete', 'script', 'changes the function libraries of every replica'],
  ['function|flush', 'script', 'changes the function libraries of every replica'],
  ['function|restore', 'script', 'changes the function libraries of every replica'],
  ['script|exists', 'read', 'reads the script cache, which the log keeps identical everywhere'],
  ['function|list', 'read', 'reads the function libraries, which the log keeps identical'],
  ['function|dump', 'read', 'reads the function libraries, which the log keeps identical'],
  ['function|stats', 'read', 'reports the local engine and running function'],
  ['script|kill', 'rejected', 'would stop the script on one backend while the others run it to the end: the replicas would diverge'],
  ['function|kill', 'rejected', 'would stop the function on one backend while the others run it to the end: the replicas would diverge'],
  ['script|debug', 'rejected', 'the Lua debugger needs an interactive session with one backend'],

  // Blocking without the 'blocking' flag.
  ['wait', 'blocking', 'waits for Redis replicas; through the proxy it waits on the log'],
  ['waitaof', 'blocking', 'waits for fsync of the local AOF (Redis >= 7.2)'],

  // Connection state is the proxy's, not the backend's.
  ['ping', 'connection', 'answered by the proxy'],
  ['echo', 'connection', 'answered by the proxy'],
  ['select', 'connection', 'the session keeps the client database and tags what it replicates'],
  ['auth', 'connection', 'the proxy authenticates its clients'],
  ['hello', 'connection', 'protocol and authentication of the proxy connection'],
  ['quit', 'connection', 'closes the proxy connection'],
  ['reset', 'connection', 'resets the proxy connection state'],
  ['readonly', 'connection', 'cluster connection mode; the proxy answers it'],
  ['readwrite', 'connection', 'cluster connection mode; the proxy answers it'],
  ['command', 'connection', 'answered from the table the proxy read from its backend'],
  ['command|*', 'connection', 'answered from the backend by the proxy'],
  ['acl|whoami', 'connection', 'the user is the one the proxy authenticated, not its backend user'],
  ['client|*', 'connection', 'client names, ids, tracking and reply modes belong to proxy connections'],
  ['client|kill', 'rejected', 'backend connections belong to the proxy'],
  ['client|pause', 'rejected', 'would stall one backend under the log'],
  ['client|unpause', 'rejected', 'pairs with CLIENT PAUSE'],

  // Answered by the local backend without ordering or replication.
  ['info', 'admin-local', 'local server report'],
  ['time', 'admin-local', 'local clock (nondeterministic; never in the log)'],
  ['lastsave', 'admin-local', 'local persistence report'],
  ['role', 'admin-local', 'local replication role'],
  ['pfselftest', 'admin-local', 'local self test, touches no key'],
  ['config|get', 'admin-local', 'reads the local configuration'],
  ['memory|*', 'admin-local', 'allocator reports and MEMORY USAGE differ per replica'],
  ['object|*', 'admin-local', 'encoding, idle time, frequency and refcount of the local copy'],
  ['slowlog|*', 'admin-local', 'the local slow log (RESET clears only this replica)'],
  ['latency|*', 'admin-local', 'local latency monitor (RESET clears only this replica)'],
  ['acl|cat', 'admin-local', 'static text'],
  ['acl|genpass', 'admin-local', 'random password from the local backend; nothing is stored'],
  ['acl|getuser', 'admin-local', 'reads the local ACL'],
  ['acl|list', 'admin-local', 'reads the local ACL'],
  ['acl|users', 'admin-local', 'reads the local ACL'],
  ['acl|log', 'admin-local', 'the local ACL log'],
  ['acl|dryrun', 'admin-local', 'checks a command against the local ACL'],
  ['module|list', 'admin-local', 'reads the local module list'],

  // Not ordered through the log, or meaningless behind a proxy.
  ['config|set', 'rejected', 'configuration is per replica and outside the log'],
  ['config|resetstat', 'rejected', 'configuration and statistics are per replica'],
  ['config|rewrite', 'rejected', 'rewrites one replica configuration file'],
  ['debug', 'rejected', 'debugging one backend (DEBUG DIGEST and DIGEST-VALUE are admin-local: see ARGV_RULES)'],
  ['pfdebug', 'rejected', 'HyperLogLog internals of one backend'],
  ['shutdown', 'rejected', 'stops one backend under the log'],
  ['replicaof', 'rejected', 'replication is the log, not Redis replication'],
  ['slaveof', 'rejected', 'replication is the log, not Redis replication'],
  ['replconf', 'rejected', 'Redis replication protocol'],
  ['sync', 'rejected', 'Redis replication protocol'],
  ['psync', 'rejected', 'Redis replication protocol'],
  ['failover', 'rejected', 'Redis replication failover; the log elects its own leader'],
  ['save', 'rejected', 'persistence is per replica and blocks its backend'],
  ['bgsave', 'rejected', 'persistence is per replica'],
  ['bgrewriteaof', 'rejected', 'persistence is per replica'],
  ['monitor', 'rejected', 'streams one backend forever'],
  ['cluster', 'rejected', 'the proxy is not a Redis Cluster'],
  ['cluster|*', 'rejected', 'the proxy is not a Redis Cluster'],
  ['asking', 'rejected', 'Redis Cluster redirection'],
  ['restore-asking', 'rejected', 'Redis Cluster slot migration'],
  ['migrate', 'rejected', 'moves keys to another server outside the log'],
  ['module|*', 'rejected', 'loading code into one backend'],
  ['acl|setuser', 'rejected', 'ACLs of the backend are not replicated; the proxy authenticates'],
  ['acl|deluser', 'rejected', 'ACLs of the backend are not replicated; the proxy authenticates'],
  ['acl|load', 'rejected', 'ACLs of the backend are not replicated; the proxy authenticates'],
  ['acl|save', 'rejected', 'ACLs of the backend are not replicated; the proxy authenticates'],

  // Writes the flags call deterministic that are not.
  ['incrbyfloat', 'write-effects', 'long double arithmetic and formatting differ between platforms; Redis itself propagates it as SET'],
  ['hincrbyfloat', 'write-effects', 'long double arithmetic and formatting differ between platforms; Redis itself propagates it as HSET'],
  ['xreadgroup', 'blocking', "flag 'blocking'; without BLOCK it is a write-effects (see ARGV_RULES): the PEL delivery times come from the local clock, and Redis itself propagates it as XCLAIM ... TIME plus XGROUP SETID"],
  ['pfcount', 'write', "flagged readonly, but with one key it stores the cached cardinality in the value (Redis propagates it); with several keys it is a read (ARGV_RULES)"],

  // Relative expirations: rewritten to absolute times at the leader (determinism.ts).
  ['expire', 'write-rewrite', 'relative expiration -> PEXPIREAT'],
  ['pexpire', 'write-rewrite', 'relative expiration -> PEXPIREAT'],
  ['setex', 'write-rewrite', 'relative expiration -> SET ... PXAT'],
  ['psetex', 'write-rewrite', 'relative expiration -> SET ... PXAT'],
  ['set', 'write-rewrite', 'EX/PX -> PXAT; without EX/PX a plain write (ARGV_RULES)'],
  ['getex', 'write-rewrite', 'EX/PX -> PXAT; otherwise a plain write (ARGV_RULES)'],
  ['restore', 'write-rewrite', 'a relative TTL -> absolute TTL with ABSTTL'],
];

/** The hand-kept rules by name (exact or 'container|*'), with their reasons. */
export const HAND_KEPT: ReadonlyMap<string, { readonly class: CommandClass; readonly why: string }> = (() => {
  const map = new Map<string, { readonly class: CommandClass; readonly why: string }>();
  for (const [name, cls, why] of HAND_KEPT_RULES) {
    if (map.has(name)) throw new Error(`command_table: hand-kept rule for '${name}' appears twice`);
    map.set(name, { class: cls, why });
  }
  return map;
})();

// ---------------------------------------------------------------------------------------
// Argument-dependent classes, applied by `lookup` on top of the static class. Each one
// errs on the safe side: a write must never come out as a read; the other way round only
// costs a trip through the log. Option names compare like Redis's strcasecmp: case
// insensitive, and up to the first NUL byte.
// ---------------------------------------------------------------------------------------

type ArgvRule = (argv: ReadonlyArray<Buffer>, cls: CommandClass) => CommandClass;

const ARGV_RULES: ReadonlyMap<string, ArgvRule> = new Map<string, ArgvRule>([
  // FLUSHALL/FLUSHDB ASYNC are refused (the brief's rule: a flush through the log must be
  // synchronous on every replica); plain and SYNC flushes are writes.
  ['flushall', flushRule],
  ['flushdb', flushRule],
  // Relative expirations only when EX or PX is there (any option position; the rewrite
  // returns anything it does not accept unchanged, so over-matching is harmless).
  ['set', (argv) => (anyOption(argv, 3, ['ex', 'px']) ? 'write-rewrite' : 'write')],
  ['getex', (argv) => (anyOption(argv, 2, ['ex', 'px']) ? 'write-rewrite' : 'write')],
  // XADD: the '*' id reads the leader's clock; approximate trimming (~) depends on the
  // radix tree layout, which Redis does not treat as part of the data (it rewrites it to
  // an exact trim when it propagates). Explicit ids ('<ms>-<seq>', '<ms>-*') and exact
  // trimming are deterministic.
  ['xadd', (argv) => (xaddOrTrimIsDeterministic(argv, true) ? 'write' : 'write-effects')],
  ['xtrim', (argv) => (xaddOrTrimIsDeterministic(argv, false) ? 'write' : 'write-effects')],
  // XREAD is a read without BLOCK; XREADGROUP without BLOCK is a write-effects (see HAND_KEPT).
  ['xread', (argv) => (xreadBlocks(argv, false) ? 'blocking' : 'read')],
  ['xreadgroup', (argv) => (xreadBlocks(argv, true) ? 'blocking' : 'write-effects')],
  // SORT and GEORADIUS* only write with STORE / STOREDIST.
  ['sort', (argv) => (anyOption(argv, 2, ['store']) ? 'write' : 'read')],
  ['georadius', (argv) => (anyOption(argv, 6, ['store', 'storedist']) ? 'write' : 'read')],
  ['georadiusbymember', (argv) => (anyOption(argv, 5, ['store', 'storedist']) ? 'write' : 'read')],
  // PFCOUNT with one key caches the cardinality in the value; with several it only reads.
  ['pfcount', (argv) => (argv.length === 2 ? 'write' : 'read')],
  // DEBUG DIGEST / DIGEST-VALUE read a hash of the local data set (compare replicas with it).
  ['debug', (argv, cls) => {
    const sub = argv[1];
    return sub !== undefined && (optIs(sub, 'digest') || optIs(sub, 'digest-value')) ? 'admin-local' : cls;
  }],
]);

function flushRule(argv: ReadonlyArray<Buffer>, cls: CommandClass): CommandClass {
  const mode = argv[1];
  return argv.length === 2 && mode !== undefined && optIs(mode, 'async') ? 'rejected' : cls;
}

// ---------------------------------------------------------------------------------------
// Key specifications (Redis >= 7), parsed from COMMAND.
// ---------------------------------------------------------------------------------------

type BeginSearch =
  | { readonly type: 'index'; readonly index: number }
  | { readonly type: 'keyword'; readonly keyword: string; readonly startfrom: number }
  | { readonly type: 'unknown' };

type FindKeys =
  | { readonly type: 'range'; readonly lastkey: number; readonly keystep: number; readonly limit: number }
  | { readonly type: 'keynum'; readonly keynumidx: number; readonly firstkey: number; readonly keystep: number }
  | { readonly type: 'unknown' };

interface KeySpec {
  readonly begin: BeginSearch;
  readonly find: FindKeys;
  // What the command does with the keys this spec finds (its flags: ACCESS reads the value;
  // INSERT, DELETE, UPDATE write it), for the ACL's read/write selectors.
  readonly access: KeyAccessKind;
  readonly notKey: boolean; // NOT_KEY: a channel or the like, not a key (no ACL key check)
  readonly variableFlags: boolean; // VARIABLE_FLAGS: the access depends on the arguments
}

interface Entry {
  readonly info: CommandInfo;
  readonly specs: readonly KeySpec[];
  readonly subcommands: ReadonlyMap<string, Entry> | undefined;
}

// Hand-kept key extraction where COMMAND's first/last/step say nothing (first_key 0,
// 'movablekeys') and the key specs may be missing (replies of servers before 7.0) or
// incomplete. EVAL-like commands: `EVAL script numkeys key... arg...`: the keys are the
// numkeys arguments after numkeys (argv[2]). SORT: the sorted key plus the last STORE
// destination, scanned like Redis's sortGetKeys.
const KEY_EXTRACTORS: ReadonlyMap<string, (argv: ReadonlyArray<Buffer>) => Buffer[]> = new Map([
  ['eval', numkeysAt2],
  ['evalsha', numkeysAt2],
  ['eval_ro', numkeysAt2],
  ['evalsha_ro', numkeysAt2],
  ['fcall', numkeysAt2],
  ['fcall_ro', numkeysAt2],
  ['sort', sortKeys],
]);

function numkeysAt2(argv: ReadonlyArray<Buffer>): Buffer[] {
  const numkeysArg = argv[2];
  if (numkeysArg === undefined) return [];
  const numkeys = string2ll(numkeysArg);
  if (numkeys === undefined || numkeys < 0n || numkeys > BigInt(argv.length - 3)) return [];
  return argv.slice(3, 3 + Number(numkeys));
}

function sortKeys(argv: ReadonlyArray<Buffer>): Buffer[] {
  const sorted = argv[1];
  if (sorted === undefined) return [];
  let store: Buffer | undefined;
  const skip: ReadonlyArray<readonly [string, number]> = [
    ['limit', 2],
    ['get', 1],
    ['by', 1],
  ];
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i] as Buffer;
    // Same loop as sortGetKeys: a skip-list name skips its arguments; STORE records the
    // argument after it (the last STORE wins) without skipping it.
    for (const [name, count] of skip) {
      if (optIs(arg, name)) {
        i += count;
        break;
      } else if (optIs(arg, 'store') && i + 1 < argv.length) {
        store = argv[i + 1];
        break;
      }
    }
  }
  return store === undefined ? [sorted] : [sorted, store];
}

export class CommandTable {
  private readonly commands: ReadonlyMap<string, Entry>;

  private constructor(commands: ReadonlyMap<string, Entry>) {
    this.commands = commands;
  }

  /** Number of top-level commands (what COMMAND COUNT reports); subcommands are not counted. */
  get size(): number {
    return this.commands.size;
  }

  /**
   * Builds the table from a COMMAND reply as redis-parser or ioredis return it (RESP2:
   * nested arrays of strings or Buffers and numbers). Accepts replies of Redis 7 (10
   * fields per command) and of older servers (6 or 7 fields: no tips, key specs or
   * subcommands). Throws an Error naming the place of the first problem.
   */
  static fromCommandReply(reply: unknown): CommandTable {
    if (!Array.isArray(reply)) throw malformed('the reply', `is ${describe(reply)}, not an array`);
    const commands = new Map<string, Entry>();
    reply.forEach((item: unknown, index: number) => {
      const entry = parseEntry(item, `command #${index}`, undefined);
      if (commands.has(entry.info.name)) throw malformed(`command #${index}`, `'${entry.info.name}' appears twice`);
      commands.set(entry.info.name, entry);
    });
    return new CommandTable(commands);
  }

  /**
   * Resolves argv[0] (case insensitive) and, for a command with subcommands, argv[1], then
   * the class for these arguments. A container with a missing or unknown subcommand
   * resolves to the container itself (its class is 'admin-local': the backend answers
   * with its error). Unknown command: undefined.
   */
  lookup(argv: ReadonlyArray<Buffer>): { info: CommandInfo; class: CommandClass } | undefined {
    const entry = this.resolve(argv);
    if (entry === undefined) return undefined;
    const rule = ARGV_RULES.get(entry.info.name);
    return { info: entry.info, class: rule === undefined ? entry.info.class : rule(argv, entry.info.class) };
  }

  /**
   * The key arguments of argv, in the order of the key specs (a key may appear twice, as in
   * Redis's COMMAND GETKEYS). Sources, first that applies: the hand-kept extractors (EVAL
   * family and FCALL family from numkeys; SORT with STORE), the key specs (Redis >= 7),
   * then first/last/step. A spec that does not fit argv (a malformed command) adds
   * nothing. Unknown command: [].
   */
  keys(argv: ReadonlyArray<Buffer>): Buffer[] {
    const entry = this.resolve(argv);
    if (entry === undefined) return [];
    const extractor = KEY_EXTRACTORS.get(entry.info.name);
    if (extractor !== undefined) return extractor(argv);
    if (entry.specs.length > 0) return keysFromSpecs(entry.specs, argv);
    return keysFromRange(entry.info, argv);
  }

  /**
   * The keys of argv with what the command does to each (read, write), as Redis' ACL
   * checks them (getKeysFromCommandWithSpecs): the key specs' flags, skipping NOT_KEY
   * specs; SET and BITFIELD, whose flags vary, as their getkeys procedures decide; the
   * hand-kept extractors as their commands' specs flag them. Without key specs (a server
   * before 7.0), every key counts as read and written.
   */
  keyAccesses(argv: ReadonlyArray<Buffer>): KeyAccess[] {
    const entry = this.resolve(argv);
    if (entry === undefined) return [];
    const name = entry.info.name;
    const extractor = KEY_EXTRACTORS.get(name);
    if (extractor !== undefined) return extractorKeyAccesses(name, extractor(argv));
    if (entry.specs.length === 0) return keysFromRange(entry.info, argv).map((key) => ({ key, ...READ_WRITE }));
    const accesses: KeyAccess[] = [];
    visitSpecKeys(entry.specs, argv, (position, spec) => {
      if (spec.notKey) return;
      const access = spec.variableFlags ? (variableKeyAccess(name, argv) ?? READ_WRITE) : spec.access;
      accesses.push({ key: argv[position] as Buffer, ...access });
    });
    return accesses;
  }

  /** Every command and subcommand (containers before their subcommands), sorted by name. */
  list(): CommandInfo[] {
    const all: CommandInfo[] = [];
    for (const entry of this.commands.values()) {
      all.push(entry.info);
      if (entry.subcommands !== undefined) for (const sub of entry.subcommands.values()) all.push(sub.info);
    }
    return all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private resolve(argv: ReadonlyArray<Buffer>): Entry | undefined {
    const first = argv[0];
    if (first === undefined) return undefined;
    const name = commandName(first);
    if (name === undefined) return undefined;
    const entry = this.commands.get(name);
    if (entry === undefined || entry.subcommands === undefined) return entry;
    const second = argv[1];
    if (second === undefined) return entry;
    const sub = commandName(second);
    return (sub === undefined ? undefined : entry.subcommands.get(`${name}|${sub}`)) ?? entry;
  }
}

// ---------------------------------------------------------------------------------------
// Classification from flags and tips, with the hand-kept rules on top.
// ---------------------------------------------------------------------------------------

function classify(name: string, flags: ReadonlySet<string>, tips: readonly string[], isContainer: boolean): CommandClass {
  const exact = HAND_KEPT.get(name);
  if (exact !== undefined) return exact.class;
  const bar = name.indexOf('|');
  if (bar >= 0 && name.slice(bar + 1) === 'help') return 'admin-local';
  if (bar >= 0) {
    const family = HAND_KEPT.get(`${name.slice(0, bar)}|*`);
    if (family !== undefined) return family.class;
  }
  if (isContainer) return 'admin-local';
  if (flags.has('pubsub')) return 'pubsub';
  if (flags.has('blocking')) return 'blocking';
  if (flags.has('admin')) return 'rejected';
  if (flags.has('write')) return tips.includes('nondeterministic_output') ? 'write-effects' : 'write';
  if (flags.has('readonly')) return 'read';
  return 'rejected';
}

// ---------------------------------------------------------------------------------------
// Parsing the COMMAND reply.
// ---------------------------------------------------------------------------------------

function malformed(where: string, problem: string): Error {
  return new Error(`malformed COMMAND reply: ${where} ${problem}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (Buffer.isBuffer(value)) return 'a Buffer';
  return `a ${typeof value}`;
}

function asText(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  throw malformed(where, `is ${describe(value)}, not a string`);
}

/** RESP integers arrive as numbers; a client configured for string numbers gives strings. */
function asInteger(value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' || Buffer.isBuffer(value)) {
    const text = value.toString();
    if (/^-?(0|[1-9][0-9]{0,14})$/.test(text)) return Number(text);
  }
  throw malformed(where, `is ${typeof value === 'number' ? String(value) : describe(value)}, not an integer`);
}

function asArray(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw malformed(where, `is ${describe(value)}, not an array`);
  return value;
}

function asTextList(value: unknown, where: string): string[] {
  return asArray(value, where).map((item, i) => asText(item, `${where}[${i}]`).toLowerCase());
}

function parseEntry(item: unknown, where: string, parent: string | undefined): Entry {
  const fields = asArray(item, where);
  if (fields.length < 6) throw malformed(where, `has ${fields.length} fields, expected at least 6 (name, arity, flags, first key, last key, step)`);
  const name = asText(fields[0], `${where} name`).toLowerCase();
  if (name === '') throw malformed(where, 'has an empty name');
  const here = `${where} ('${name}')`;
  if (parent === undefined ? name.includes('|') : !name.startsWith(`${parent}|`) || name.length === parent.length + 1) {
    throw malformed(here, parent === undefined ? "has a '|' in a top-level name" : `is not a subcommand name of the form '${parent}|<sub>'`);
  }
  const arity = asInteger(fields[1], `${here} arity`);
  if (arity === 0) throw malformed(here, 'has arity 0');
  const flags = new Set(asTextList(fields[2], `${here} flags`));
  const firstKey = asInteger(fields[3], `${here} first key`);
  const lastKey = asInteger(fields[4], `${here} last key`);
  const step = asInteger(fields[5], `${here} step`);
  const categories = new Set(fields.length > 6 ? asTextList(fields[6], `${here} ACL categories`).map((category) => category.toLowerCase()) : []);
  const tips = fields.length > 7 ? asTextList(fields[7], `${here} tips`) : [];
  const specs = fields.length > 8 ? asArray(fields[8], `${here} key specs`).map((s, i) => parseKeySpec(s, `${here} key spec #${i}`)) : [];
  let subcommands: Map<string, Entry> | undefined;
  if (fields.length > 9) {
    const subs = asArray(fields[9], `${here} subcommands`);
    if (subs.length > 0) {
      if (parent !== undefined) throw malformed(here, 'is a subcommand with subcommands');
      subcommands = new Map();
      for (const [i, sub] of subs.entries()) {
        const entry = parseEntry(sub, `${here} subcommand #${i}`, name);
        if (subcommands.has(entry.info.name)) throw malformed(`${here} subcommand #${i}`, `'${entry.info.name}' appears twice`);
        subcommands.set(entry.info.name, entry);
      }
    }
  }
  const info: CommandInfo = Object.freeze({
    name,
    arity,
    flags,
    firstKey,
    lastKey,
    step,
    tips: Object.freeze(tips),
    categories,
    class: classify(name, flags, tips, subcommands !== undefined),
  });
  return { info, specs, subcommands };
}

/** RESP2 sends a key spec (a map) as a flat array: name, value, name, value, ... */
function asMap(value: unknown, where: string): Map<string, unknown> {
  const flat = asArray(value, where);
  if (flat.length % 2 !== 0) throw malformed(where, `is a map with an odd number (${flat.length}) of elements`);
  const map = new Map<string, unknown>();
  for (let i = 0; i < flat.length; i += 2) map.set(asText(flat[i], `${where} field name #${i / 2}`).toLowerCase(), flat[i + 1]);
  return map;
}

function required(map: Map<string, unknown>, field: string, where: string): unknown {
  if (!map.has(field)) throw malformed(where, `lacks '${field}'`);
  return map.get(field);
}

function parseKeySpec(value: unknown, where: string): KeySpec {
  const spec = asMap(value, where);
  const bsWhere = `${where} begin_search`;
  const bs = asMap(required(spec, 'begin_search', where), bsWhere);
  const bsType = asText(required(bs, 'type', bsWhere), `${bsWhere} type`).toLowerCase();
  const bsSpec = asMap(required(bs, 'spec', bsWhere), `${bsWhere} spec`);
  let begin: BeginSearch;
  if (bsType === 'index') {
    const index = asInteger(required(bsSpec, 'index', `${bsWhere} spec`), `${bsWhere} index`);
    if (index < 1) throw malformed(`${bsWhere} index`, `is ${index}, expected >= 1`);
    begin = { type: 'index', index };
  } else if (bsType === 'keyword') {
    const keyword = asText(required(bsSpec, 'keyword', `${bsWhere} spec`), `${bsWhere} keyword`).toLowerCase();
    const startfrom = asInteger(required(bsSpec, 'startfrom', `${bsWhere} spec`), `${bsWhere} startfrom`);
    if (keyword === '' || startfrom === 0) throw malformed(bsWhere, 'has an empty keyword or startfrom 0');
    begin = { type: 'keyword', keyword, startfrom };
  } else {
    begin = { type: 'unknown' }; // 'unknown' (and any future type): no keys from this spec
  }
  const fkWhere = `${where} find_keys`;
  const fk = asMap(required(spec, 'find_keys', where), fkWhere);
  const fkType = asText(required(fk, 'type', fkWhere), `${fkWhere} type`).toLowerCase();
  const fkSpec = asMap(required(fk, 'spec', fkWhere), `${fkWhere} spec`);
  let find: FindKeys;
  if (fkType === 'range') {
    const lastkey = asInteger(required(fkSpec, 'lastkey', `${fkWhere} spec`), `${fkWhere} lastkey`);
    const keystep = asInteger(required(fkSpec, 'keystep', `${fkWhere} spec`), `${fkWhere} keystep`);
    const limit = asInteger(required(fkSpec, 'limit', `${fkWhere} spec`), `${fkWhere} limit`);
    if (keystep < 1 || limit < 0) throw malformed(fkWhere, `has keystep ${keystep} and limit ${limit}, expected >= 1 and >= 0`);
    find = { type: 'range', lastkey, keystep, limit };
  } else if (fkType === 'keynum') {
    const keynumidx = asInteger(required(fkSpec, 'keynumidx', `${fkWhere} spec`), `${fkWhere} keynumidx`);
    const firstkey = asInteger(required(fkSpec, 'firstkey', `${fkWhere} spec`), `${fkWhere} firstkey`);
    const keystep = asInteger(required(fkSpec, 'keystep', `${fkWhere} spec`), `${fkWhere} keystep`);
    if (keynumidx < 0 || firstkey < 1 || keystep < 1) throw malformed(fkWhere, 'has keynumidx < 0, firstkey < 1 or keystep < 1');
    find = { type: 'keynum', keynumidx, firstkey, keystep };
  } else {
    find = { type: 'unknown' };
  }
  const flags = new Set(spec.has('flags') ? asTextList(spec.get('flags'), `${where} flags`).map((flag) => flag.toLowerCase()) : ['rw', 'access', 'update']);
  const access = { read: flags.has('access'), write: flags.has('insert') || flags.has('delete') || flags.has('update') };
  return { begin, find, access, notKey: flags.has('not_key'), variableFlags: flags.has('variable_flags') };
}

// ---------------------------------------------------------------------------------------
// Key extraction.
// ---------------------------------------------------------------------------------------

/** Redis's getKeysUsingKeySpecs, keeping what the valid specs give. */
function keysFromSpecs(specs: readonly KeySpec[], argv: ReadonlyArray<Buffer>): Buffer[] {
  const keys: Buffer[] = [];
  visitSpecKeys(specs, argv, (position) => keys.push(argv[position] as Buffer));
  return keys;
}

/** Calls `found` with the position of each key the specs find, and the spec that found it. */
function visitSpecKeys(specs: readonly KeySpec[], argv: ReadonlyArray<Buffer>, found: (position: number, spec: KeySpec) => void): void {
  const argc = argv.length;
  for (const spec of specs) {
    let first = 0;
    const begin = spec.begin;
    if (begin.type === 'index') {
      first = begin.index;
    } else if (begin.type === 'keyword') {
      const start = begin.startfrom > 0 ? begin.startfrom : argc + begin.startfrom;
      const end = begin.startfrom > 0 ? argc - 1 : 1;
      // As in Redis, the search stops before `end` (a keyword there would have no key after it).
      for (let i = start; i !== end; i = start <= end ? i + 1 : i - 1) {
        if (i >= argc || i < 1) break;
        if (optIs(argv[i] as Buffer, begin.keyword)) {
          first = i + 1;
          break;
        }
      }
      if (first === 0) continue;
    } else {
      continue;
    }
    let last: number;
    let step: number;
    const find = spec.find;
    if (find.type === 'range') {
      step = find.keystep;
      if (find.lastkey >= 0) last = first + find.lastkey;
      else if (find.limit === 0) last = argc + find.lastkey;
      else last = first + (Math.trunc((argc - first) / find.limit) + find.lastkey);
    } else if (find.type === 'keynum') {
      step = find.keystep;
      if (find.keynumidx >= argc - first) continue;
      const numkeys = string2ll(argv[first + find.keynumidx] as Buffer);
      if (numkeys === undefined || numkeys < 0n || numkeys > BigInt(argc)) continue;
      first += find.firstkey;
      last = first + Number(numkeys) - 1;
    } else {
      continue;
    }
    if (last >= argc || last < first || first >= argc) continue;
    for (let i = first; i <= last; i += step) found(i, spec);
  }
}

/** The legacy first/last/step positions (servers without key specs). */
function keysFromRange(info: CommandInfo, argv: ReadonlyArray<Buffer>): Buffer[] {
  if (info.firstKey <= 0 || info.step <= 0) return [];
  const last = info.lastKey < 0 ? argv.length + info.lastKey : info.lastKey;
  const keys: Buffer[] = [];
  for (let i = info.firstKey; i <= last && i < argv.length; i += info.step) keys.push(argv[i] as Buffer);
  return keys;
}

// ---------------------------------------------------------------------------------------
// Argument helpers (C semantics where Redis uses them).
// ---------------------------------------------------------------------------------------


function anyOption(argv: ReadonlyArray<Buffer>, from: number, names: readonly string[]): boolean {
  for (let i = from; i < argv.length; i++) {
    const arg = argv[i] as Buffer;
    if (names.some((name) => optIs(arg, name))) return true;
  }
  return false;
}

/** Redis's string2ll: no sign but '-', no leading zeros, no spaces, at most 20 bytes. */
function string2ll(arg: Buffer): bigint | undefined {
  if (arg.length === 0 || arg.length >= 21) return undefined;
  const text = arg.toString('latin1');
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined;
  const value = BigInt(text);
  return value > 9223372036854775807n || value < -9223372036854775808n ? undefined : value;
}

/** Like Redis's streamParseAddOrTrimArgsOrReply: false when the id is '*' or the trim is approximate. */
function xaddOrTrimIsDeterministic(argv: ReadonlyArray<Buffer>, xadd: boolean): boolean {
  let approx = false;
  for (let i = 2; i < argv.length; i++) {
    const moreargs = argv.length - 1 - i;
    const opt = argv[i] as Buffer;
    if (xadd && optIs(opt, '*')) return false;
    if ((optIs(opt, 'maxlen') || optIs(opt, 'minid')) && moreargs > 0) {
      const next = argv[i + 1] as Buffer;
      if (moreargs >= 2 && optIs(next, '~')) {
        approx = true;
        i++;
      } else if (moreargs >= 2 && optIs(next, '=')) {
        i++;
      }
      i++; // the threshold
    } else if (optIs(opt, 'limit') && moreargs > 0) {
      i++;
    } else if (xadd && optIs(opt, 'nomkstream')) {
      // flag
    } else {
      break; // XADD: the explicit id (or a syntax error); XTRIM: a syntax error
    }
  }
  return !approx;
}

/** Like Redis's xreadCommand option loop: whether BLOCK comes before STREAMS. */
function xreadBlocks(argv: ReadonlyArray<Buffer>, group: boolean): boolean {
  for (let i = 1; i < argv.length; i++) {
    const moreargs = argv.length - 1 - i;
    const opt = argv[i] as Buffer;
    if (optIs(opt, 'block') && moreargs > 0) return true;
    if (optIs(opt, 'count') && moreargs > 0) i++;
    else if (optIs(opt, 'streams') && moreargs > 0) return false;
    else if (group && optIs(opt, 'group') && moreargs >= 2) i += 2;
    else if (group && optIs(opt, 'noack')) continue;
    else return false;
  }
  return false;
}
