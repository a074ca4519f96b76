// The consumer-group commands that read the local clock: XREADGROUP (without BLOCK), XCLAIM
// and XAUTOCLAIM. Each stamps the pending entries it delivers or claims with the server's
// time, XCLAIM and XAUTOCLAIM choose entries by how long they have been idle, and
// XREADGROUP moves the group's last-delivered id. Replayed on every replica they would
// deliver and claim differently, so, like the other nondeterministic writes (effects.ts),
// the leader runs them once under the write barrier and replicates their effects, the way
// Redis propagates them to its own replicas:
//
//   every pending entry the command touched, as the leader has it afterwards:
//     still pending  -> XCLAIM key group <owner> 0 <id> TIME <delivery ms> RETRYCOUNT <n> FORCE JUSTID
//     gone (deleted) -> XACK key group <id>
//   the group's position, when XREADGROUP read new entries ('>') or XCLAIM had LASTID:
//     XGROUP SETID key group <last-delivered-id> [ENTRIESREAD <n>]
//   the consumer, when the leader has it:   XGROUP CREATECONSUMER key group <consumer>
//
// all in one MULTI/EXEC entry. Each is idempotent, so the leader's own backend applying
// them again changes nothing. The leader reads "afterwards" with XPENDING, XINFO GROUPS and
// XINFO CONSUMERS while the barrier still holds every other write back.
//
// What stays as in Redis: an entry read again from the pending list after it was deleted
// from the stream (XREADGROUP with an id, answered with a nil body) keeps its old delivery
// count and time on the other replicas (Redis does not propagate it either); consumers'
// seen-time is each server's own. DEBUG DIGEST covers neither (it hashes no group state).
import { parseReply } from '../../adapters/redis/parse_reply.js';

const streamGroupCommands = new Set(['xreadgroup', 'xclaim', 'xautoclaim']);

export function isStreamGroupCommand(argv: ReadonlyArray<Buffer>): boolean {
  return streamGroupCommands.has((argv[0] as Buffer).toString('latin1').toLowerCase());
}

// Asks the leader's backend, in the current database, and returns the raw replies in order.
export type BackendQuery = (commands: Buffer[][]) => Promise<Buffer[]>;

interface Touched {
  key: Buffer;
  group: Buffer;
  consumer: Buffer;
  ids: Buffer[]; // pending entries whose state the command may have changed
  position: boolean; // the group's last-delivered id may have moved
}

const word = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString('latin1').toLowerCase());
const isStreamId = (arg: Buffer): boolean => /^\d+(-\d+)?$/.test(arg.toString('latin1'));
// "5" names entry 5-0 (as XCLAIM reads it); XPENDING would read it as a range bound.
const fullId = (arg: Buffer): Buffer => (arg.includes(0x2d /* - */) ? arg : Buffer.concat([arg, b('-0')]));
const b = (text: string): Buffer => Buffer.from(text);

// Runs `argv` on the leader's backend (`run`) and returns its reply with the effects to
// replicate, as commands for one MULTI/EXEC entry (null when nothing changed: an error
// reply, or a read that delivered nothing to a consumer that already existed). Which
// consumers exist is asked before the command runs, so that a consumer is created on
// the other replicas only when the command created it: a blocked XREADGROUP retrying an
// empty read then proposes nothing (and does not wake itself with its own entry).
export async function runStreamGroupCommand(
  argv: ReadonlyArray<Buffer>,
  run: () => Promise<Buffer>,
  query: BackendQuery,
): Promise<{ reply: Buffer; effects: Buffer[][] | null }> {
  const streams = namedStreams(argv);
  const consumersBefore = await Promise.all(streams.map(({ key, group }) => consumersOf(key, group, query)));
  const reply = await run();
  if (reply[0] === 0x2d /* - */) return { reply, effects: null }; // refused before changing anything
  const touched = touchedBy(argv, parseReply(reply, { buffers: true }));
  const effects: Buffer[][] = [];
  for (const [i, one] of touched.entries()) effects.push(...(await effectsFor(one, consumersBefore[i] ?? [], query)));
  return { reply, effects: effects.length === 0 ? null : effects };
}

// The (key, group) pairs the command names, in the order touchedBy returns them.
function namedStreams(argv: ReadonlyArray<Buffer>): Array<{ key: Buffer; group: Buffer }> {
  if (word(argv[0]) !== 'xreadgroup') return [{ key: argv[1] as Buffer, group: argv[2] as Buffer }];
  const groupAt = argv.findIndex((arg, i) => i >= 1 && word(arg) === 'group');
  const streamsAt = argv.findIndex((arg, i) => i > groupAt + 2 && word(arg) === 'streams');
  if (groupAt < 0 || streamsAt < 0) return [];
  const names = argv.slice(streamsAt + 1);
  return names.slice(0, Math.floor(names.length / 2)).map((key) => ({ key, group: argv[groupAt + 1] as Buffer }));
}

// The group's consumers' names; none when the key or the group does not exist.
async function consumersOf(key: Buffer, group: Buffer, query: BackendQuery): Promise<Buffer[]> {
  const [answer] = await query([[b('XINFO'), b('CONSUMERS'), key, group]]);
  if (answer === undefined || answer[0] === 0x2d /* - */) return [];
  return (parseReply(answer, { buffers: true }) as unknown[][]).map(fields).map((info) => info.get('name')).filter((name): name is Buffer => Buffer.isBuffer(name));
}

function touchedBy(argv: ReadonlyArray<Buffer>, parsed: unknown): Touched[] {
  const name = word(argv[0]);
  if (name === 'xreadgroup') {
    const groupAt = argv.findIndex((arg, i) => i >= 1 && word(arg) === 'group');
    const streamsAt = argv.findIndex((arg, i) => i > groupAt + 2 && word(arg) === 'streams');
    const group = argv[groupAt + 1] as Buffer;
    const consumer = argv[groupAt + 2] as Buffer;
    const names = argv.slice(streamsAt + 1);
    const keys = names.slice(0, names.length / 2);
    const ids = names.slice(names.length / 2);
    // A nil reply (nothing to read) still creates the consumer on each stream.
    const delivered = new Map<string, Buffer[]>();
    if (Array.isArray(parsed)) {
      for (const stream of parsed as Array<[Buffer, Array<[Buffer, unknown]>]>) {
        delivered.set(stream[0].toString('latin1'), stream[1].filter((entry) => entry[1] !== null).map((entry) => entry[0]));
      }
    }
    return keys.map((key, i) => ({
      key,
      group,
      consumer,
      ids: delivered.get(key.toString('latin1')) ?? [],
      position: (ids[i] as Buffer).toString('latin1') === '>',
    }));
  }
  const [, key, group, consumer] = argv as Buffer[];
  if (name === 'xclaim') {
    const ids: Buffer[] = [];
    for (let i = 5; i < argv.length && isStreamId(argv[i] as Buffer); i++) ids.push(fullId(argv[i] as Buffer));
    const position = argv.slice(5 + ids.length).some((arg) => word(arg) === 'lastid');
    return [{ key: key as Buffer, group: group as Buffer, consumer: consumer as Buffer, ids, position }];
  }
  // XAUTOCLAIM: [next cursor, claimed entries (or ids with JUSTID), deleted ids].
  const [, claimed, deleted] = parsed as [Buffer, Array<Buffer | [Buffer, unknown]>, Buffer[] | undefined];
  const ids = claimed.map((entry) => (Buffer.isBuffer(entry) ? entry : entry[0]));
  return [{ key: key as Buffer, group: group as Buffer, consumer: consumer as Buffer, ids: [...ids, ...(deleted ?? [])], position: false }];
}

async function effectsFor(touched: Touched, consumersBefore: Buffer[], query: BackendQuery): Promise<Buffer[][]> {
  const { key, group, consumer, ids } = touched;
  const questions: Buffer[][] = [
    [b('XINFO'), b('GROUPS'), key],
    [b('XINFO'), b('CONSUMERS'), key, group],
    ...ids.map((id) => [b('XPENDING'), key, group, id, id, b('1')]),
  ];
  const answers = await query(questions);
  const askedAtMs = Date.now();
  const effects: Buffer[][] = [];
  const groups = parseReply(answers[0] as Buffer, { buffers: true }) as Buffer[][];
  const groupInfo = groups.map(fields).find((info) => named(info, group));
  if (groupInfo === undefined) return []; // no such group: the command changed nothing
  const consumers = (parseReply(answers[1] as Buffer, { buffers: true }) as Buffer[][]).map(fields);
  const createdNow = consumers.some((info) => named(info, consumer)) && !consumersBefore.some((name) => name.equals(consumer));
  if (createdNow) effects.push([b('XGROUP'), b('CREATECONSUMER'), key, group, consumer]);
  ids.forEach((id, i) => {
    const pending = parseReply(answers[i + 2] as Buffer, { buffers: true }) as Array<[Buffer, Buffer, number, number]>;
    const entry = pending[0];
    if (entry === undefined || !entry[0].equals(id)) {
      effects.push([b('XACK'), key, group, id]);
      return;
    }
    const [, owner, idleMs, deliveries] = entry;
    effects.push([b('XCLAIM'), key, group, owner, b('0'), id, b('TIME'), b(String(askedAtMs - idleMs)), b('RETRYCOUNT'), b(String(deliveries)), b('FORCE'), b('JUSTID')]);
  });
  // XREADGROUP moves the group's position only when it delivered new entries.
  if (touched.position && ids.length > 0) {
    const last = groupInfo.get('last-delivered-id') as Buffer;
    const entriesRead = groupInfo.get('entries-read');
    effects.push([b('XGROUP'), b('SETID'), key, group, last, ...(entriesRead === null || entriesRead === undefined ? [] : [b('ENTRIESREAD'), b(String(entriesRead))])]);
  }
  return effects;
}

function named(info: Map<string, Buffer | number | null>, name: Buffer): boolean {
  const value = info.get('name');
  return Buffer.isBuffer(value) && value.equals(name);
}

// XINFO's flat [name, value, name, value ...] arrays as a map.
function fields(flat: unknown[]): Map<string, Buffer | number | null> {
  const map = new Map<string, Buffer | number | null>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set((flat[i] as Buffer).toString('latin1'), flat[i + 1] as Buffer | number | null);
  return map;
}
