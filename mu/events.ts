// Parses the event records the native Replica delivers (native/addon/engine_host.hpp):
// each record is a 4-byte length, a 24-byte header (kind u32, detail u32, value u64,
// extra u64, little-endian) and, for an applied entry, its command batch (origin u32,
// length u32, sequence u64, bytes; native/engine/command_batch.hpp). Commands are views
// into the delivered Buffer, not copies.

export interface AppliedCommand {
  origin: number; // the replica that proposed it
  sequence: number; // that replica's proposal sequence number
  data: Buffer;
}

export type NativeEvent =
  | { kind: 'applied'; index: number; nextPosition: number; commands: AppliedCommand[] }
  | { kind: 'dropped'; sequence: number }
  | { kind: 'reign-ended'; nextIndex: number; lastTakenSequence: number }
  | { kind: 'role'; role: RoleName; candidacy: CandidacyName; holder: number | null; proposal: number }
  | { kind: 'needs-state-transfer'; nextIndex: number }
  | { kind: 'fates-known'; throughSequence: number }
  // change: the number reconnectPeer / releaseLink returned for it
  | { kind: 'peer-reconnected'; peer: number; ok: boolean; change: number }
  | { kind: 'state-transfer-resumed'; nextIndex: number; resumed: boolean };

export type RoleName = 'follower' | 'recovering' | 'preparing' | 'leader' | 'deposed';
export type CandidacyName = 'idle' | 'requesting' | 'leading';

const roleNames: readonly RoleName[] = ['follower', 'recovering', 'preparing', 'leader', 'deposed'];
const candidacyNames: readonly CandidacyName[] = ['idle', 'requesting', 'leading'];
const headerBytes = 24;
const commandHeaderBytes = 16;

// Indices and sequences are 64-bit in the engine; below 2^53 they are exact as numbers,
// which is centuries at a million entries per second.
function readU64(buffer: Buffer, offset: number): number {
  return Number(buffer.readBigUInt64LE(offset));
}

export function parseEvents(records: Buffer): NativeEvent[] {
  const events: NativeEvent[] = [];
  let offset = 0;
  while (offset < records.length) {
    if (records.length - offset < 4) throw new Error('native events: truncated record length');
    const length = records.readUInt32LE(offset);
    const start = offset + 4;
    const end = start + length;
    if (length < headerBytes || end > records.length) throw new Error('native events: malformed record');
    const kind = records.readUInt32LE(start);
    const detail = records.readUInt32LE(start + 4);
    const value = readU64(records, start + 8);
    const extra = readU64(records, start + 16);
    switch (kind) {
      case 1:
        events.push({ kind: 'applied', index: value, nextPosition: extra, commands: parseCommands(records.subarray(start + headerBytes, end)) });
        break;
      case 2:
        events.push({ kind: 'dropped', sequence: value });
        break;
      case 3:
        events.push({ kind: 'reign-ended', nextIndex: value, lastTakenSequence: extra });
        break;
      case 4: {
        const holderPlusOne = detail >>> 16;
        events.push({
          kind: 'role',
          role: roleNames[detail & 0xff] ?? 'follower',
          candidacy: candidacyNames[(detail >>> 8) & 0xff] ?? 'idle',
          holder: holderPlusOne === 0 ? null : holderPlusOne - 1,
          proposal: value,
        });
        break;
      }
      case 5:
        events.push({ kind: 'needs-state-transfer', nextIndex: value });
        break;
      case 6:
        events.push({ kind: 'fates-known', throughSequence: value });
        break;
      case 7:
        events.push({ kind: 'peer-reconnected', peer: value, ok: detail === 1, change: extra });
        break;
      case 8:
        events.push({ kind: 'state-transfer-resumed', nextIndex: value, resumed: detail === 1 });
        break;
      default:
        throw new Error(`native events: unknown kind ${kind}`);
    }
    offset = end;
  }
  return events;
}

export function parseCommands(batch: Buffer): AppliedCommand[] {
  const commands: AppliedCommand[] = [];
  let offset = 0;
  while (offset < batch.length) {
    if (batch.length - offset < commandHeaderBytes) throw new Error('command batch: truncated header');
    const origin = batch.readUInt32LE(offset);
    const length = batch.readUInt32LE(offset + 4);
    const sequence = readU64(batch, offset + 8);
    const start = offset + commandHeaderBytes;
    if (start + length > batch.length) throw new Error('command batch: a command runs past the end');
    commands.push({ origin, sequence, data: batch.subarray(start, start + length) });
    offset = start + length;
  }
  return commands;
}
