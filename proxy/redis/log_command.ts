// What the Redis front end puts in the Mu log: one record per client request (a command,
// or a whole MULTI/EXEC transaction), tagged with the proposing replica and its request id
// so that replica can hand its own backend's reply back to the waiting client, and with
// the database the client had SELECTed, which changes the command's meaning.
//
//   kind u8 | origin u16 | request id u64 (LE) | db u16 | count u16 | count x (length u32, RESP bytes)
//
// Each RESP part is a complete encoded command (adapters/redis/resp.ts encodeCommand), so
// applying is writing bytes, with no re-encoding. kind: 1 = commands, applied as they
// are; 2 = transaction, applied as MULTI, the parts, EXEC; 3 = barrier (no parts): a
// linearizable read's proof that this replica still leads, applied as nothing; 4 = digest
// (no parts): every replica records its backend's DEBUG DIGEST at this entry's index, so
// `mu-proxy check` compares the replicas at one point of the log.

export const enum LogCommandKind {
  commands = 1,
  transaction = 2,
  barrier = 3,
  digest = 4,
}

export interface LogCommand {
  kind: LogCommandKind;
  origin: number;
  requestId: number;
  db: number;
  parts: Buffer[]; // encoded RESP commands
}

const headerBytes = 1 + 2 + 8 + 2 + 2;
export const maxParts = 0xffff;

export function encodeLogCommand(command: LogCommand): Buffer {
  if (command.parts.length > maxParts) throw new RangeError(`a log command holds at most ${maxParts} parts`);
  let length = headerBytes;
  for (const part of command.parts) length += 4 + part.length;
  const out = Buffer.allocUnsafe(length);
  out.writeUInt8(command.kind, 0);
  out.writeUInt16LE(command.origin, 1);
  out.writeBigUInt64LE(BigInt(command.requestId), 3);
  out.writeUInt16LE(command.db, 11);
  out.writeUInt16LE(command.parts.length, 13);
  let offset = headerBytes;
  for (const part of command.parts) {
    out.writeUInt32LE(part.length, offset);
    part.copy(out, offset + 4);
    offset += 4 + part.length;
  }
  return out;
}

// Throws on malformed bytes: the log only holds what encodeLogCommand wrote, so a failure
// here is a bug (or a foreign writer), never a client's input.
export function decodeLogCommand(bytes: Buffer): LogCommand {
  if (bytes.length < headerBytes) throw new Error('log command: truncated header');
  const kind = bytes.readUInt8(0) as LogCommandKind;
  if (kind !== LogCommandKind.commands && kind !== LogCommandKind.transaction && kind !== LogCommandKind.barrier && kind !== LogCommandKind.digest) {
    throw new Error(`log command: unknown kind ${kind}`);
  }
  const origin = bytes.readUInt16LE(1);
  const requestId = Number(bytes.readBigUInt64LE(3));
  const db = bytes.readUInt16LE(11);
  const count = bytes.readUInt16LE(13);
  const parts: Buffer[] = [];
  let offset = headerBytes;
  for (let i = 0; i < count; i++) {
    if (offset + 4 > bytes.length) throw new Error('log command: truncated part length');
    const length = bytes.readUInt32LE(offset);
    if (offset + 4 + length > bytes.length) throw new Error('log command: a part runs past the end');
    parts.push(bytes.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  if (offset !== bytes.length) throw new Error('log command: trailing bytes');
  return { kind, origin, requestId, db, parts };
}
