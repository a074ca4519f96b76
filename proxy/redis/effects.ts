// Nondeterministic writes (SPOP, INCRBYFLOAT, HINCRBYFLOAT, XADD with an automatic id)
// cannot be replayed on every replica: each would pick other members, format another
// float, stamp another id. As Redis does for its own replicas, the leader executes them
// once and replicates their effects: the SREM of the popped members, a SET (KEEPTTL) or
// HSET of the resulting value, the XADD with the id it got. Applying an effect again at
// the leader changes nothing: nothing else ran in between (the write barrier below).
//
// The write barrier: while one such command runs, no new entry is proposed by this
// replica (they queue in FrontEnd.submit); it waits until everything proposed before is
// applied here, runs the command on its own backend, proposes the effect, and only then
// lets the queue go. The client's reply is the leader backend's own reply, sent once the
// effect is committed.

import { isStreamGroupCommand } from './stream_group_effects.js';
import { isApproximateTrim } from './stream_trim_effects.js';

// The effect of `argv` given the leader backend's raw `reply`: the command to replicate,
// `null` when nothing changed (an error, or nothing popped), undefined when this command
// is not one handled here.
export function effectOf(argv: ReadonlyArray<Buffer>, reply: Buffer): Buffer[] | null | undefined {
  const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
  if (reply[0] === 0x2d /* - */) return null; // an error changes nothing, the same everywhere
  const key = argv[1] as Buffer;
  switch (name) {
    case 'spop': {
      const members = bulkStrings(reply);
      if (members === undefined || members.length === 0) return null;
      return [Buffer.from('SREM'), key, ...members];
    }
    case 'incrbyfloat': {
      const value = bulkStrings(reply)?.[0];
      return value === undefined ? null : [Buffer.from('SET'), key, value, Buffer.from('KEEPTTL')];
    }
    case 'hincrbyfloat': {
      const value = bulkStrings(reply)?.[0];
      return value === undefined ? null : [Buffer.from('HSET'), key, argv[2] as Buffer, value];
    }
    case 'xadd': {
      const id = bulkStrings(reply)?.[0];
      if (id === undefined) return null; // NOMKSTREAM on a missing stream: nothing added
      const star = argv.findIndex((arg, i) => i >= 2 && arg.length === 1 && arg[0] === 0x2a /* * */);
      if (star < 0) return undefined;
      return argv.map((arg, i) => (i === star ? id : arg));
    }
    default:
      return undefined;
  }
}

// Which write-effects commands are handled (the rest stay refused): by effectOf, SPOP, the
// two float increments, and XADD with an automatic id; by stream_trim_effects.ts, XADD and
// XTRIM with approximate trimming; by stream_group_effects.ts, XREADGROUP without BLOCK,
// XCLAIM and XAUTOCLAIM.
export function handlesEffects(argv: ReadonlyArray<Buffer>): boolean {
  const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
  if (name === 'spop' || name === 'incrbyfloat' || name === 'hincrbyfloat') return true;
  if (isStreamGroupCommand(argv) || isApproximateTrim(argv)) return true; // stream_*_effects.ts
  if (name !== 'xadd') return false;
  return argv.some((arg) => arg.length === 1 && arg[0] === 0x2a /* * */);
}

// The bulk strings of a bulk or array-of-bulks reply; undefined for anything else (nil
// bulk or nil array: an empty list).
function bulkStrings(reply: Buffer): Buffer[] | undefined {
  let offset = 0;
  const readLine = (): string | undefined => {
    const end = reply.indexOf('\r\n', offset);
    if (end < 0) return undefined;
    const line = reply.toString('latin1', offset, end);
    offset = end + 2;
    return line;
  };
  const readBulk = (): Buffer | null | undefined => {
    const header = readLine();
    if (header === undefined || header[0] !== '$') return undefined;
    const length = Number(header.slice(1));
    if (length < 0) return null;
    const value = reply.subarray(offset, offset + length);
    offset += length + 2;
    return value;
  };
  if (reply[0] === 0x24 /* $ */) {
    const value = readBulk();
    return value === undefined ? undefined : value === null ? [] : [value];
  }
  if (reply[0] === 0x2a /* * */) {
    const header = readLine() as string;
    const count = Number(header.slice(1));
    const values: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const value = readBulk();
      if (value === undefined) return undefined;
      if (value !== null) values.push(value);
    }
    return values;
  }
  return undefined;
}
