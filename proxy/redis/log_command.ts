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
// `mu-proxy check` compares the replicas at one point of the log; 5 = chunk: one piece of
// a log command larger than a log entry (below); 6 = memcached: one request as memcached
// reads it (its line, and its data block), the shape of its reply in the db field
// (proxy/memcached/front_end.ts), applied to the replica's memcached.

export const enum LogCommandKind {
  commands = 1,
  transaction = 2,
  barrier = 3,
  digest = 4,
  chunk = 5,
  memcached = 6,
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
  if (kind !== LogCommandKind.commands && kind !== LogCommandKind.transaction && kind !== LogCommandKind.barrier && kind !== LogCommandKind.digest && kind !== LogCommandKind.chunk && kind !== LogCommandKind.memcached) {
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

// --- commands larger than a log entry ------------------------------------------------------
//
// A log command too large for one entry (a 5 MB SET; the engine's entries are at most
// 1 MiB) is proposed as consecutive chunk commands, each one part:
//   piece index u32 | piece count u32 | bytes
// with the whole command's origin and request id. One replica proposes them in one call,
// so they are consecutive in its submission order and in the log. The command takes
// effect where its last piece lands, once every piece before it was applied in order; a
// leader deposed part-way leaves pieces that never complete (the proposer saw a piece
// fail, so its client was told the command did not run), and every replica drops them.

const pieceHeaderBytes = 8;
// What a chunk command adds around its piece: the log command header, one part length,
// the piece header.
export const chunkOverheadBytes = headerBytes + 4 + pieceHeaderBytes;

// Splits an encoded log command into chunk commands of at most `maxBytes` each.
export function splitLogCommand(command: Buffer, origin: number, requestId: number, maxBytes: number): Buffer[] {
  const pieceBytes = maxBytes - chunkOverheadBytes;
  if (pieceBytes <= 0) throw new RangeError(`a log entry of ${maxBytes} bytes cannot carry a chunk`);
  const count = Math.ceil(command.length / pieceBytes);
  const chunks: Buffer[] = [];
  for (let index = 0; index < count; index++) {
    const piece = command.subarray(index * pieceBytes, (index + 1) * pieceBytes);
    const part = Buffer.allocUnsafe(pieceHeaderBytes + piece.length);
    part.writeUInt32LE(index, 0);
    part.writeUInt32LE(count, 4);
    piece.copy(part, pieceHeaderBytes);
    chunks.push(encodeLogCommand({ kind: LogCommandKind.chunk, origin, requestId, db: 0, parts: [part] }));
  }
  return chunks;
}

// A command part-way through assembly: its pieces so far, joined, and the next one due.
export interface PartialChunk {
  origin: number;
  requestId: number;
  next: number;
  bytes: Buffer;
}

// Puts chunked commands back together on the apply side, in log order.
export class ChunkAssembler {
  private partial: { origin: number; requestId: number; next: number; pieces: Buffer[] } | undefined;

  // The command being assembled now, if any: a snapshot taken between its pieces must carry
  // them, or the replica that resumes from it would drop the command the others apply.
  get assembling(): PartialChunk | undefined {
    const partial = this.partial;
    if (partial === undefined) return undefined;
    return { origin: partial.origin, requestId: partial.requestId, next: partial.next, bytes: Buffer.concat(partial.pieces) };
  }

  // Resumes from a snapshot's state: the command it was assembling, or none.
  resume(partial: PartialChunk | undefined): void {
    this.partial = partial === undefined ? undefined : { origin: partial.origin, requestId: partial.requestId, next: partial.next, pieces: [partial.bytes] };
  }

  // A chunk command: the whole log command once its last piece arrives, else undefined. A
  // piece that does not continue the command being assembled drops that command (it can
  // never complete) and starts over if it is a first piece.
  push(chunk: LogCommand): LogCommand | undefined {
    const part = chunk.parts[0];
    if (chunk.parts.length !== 1 || part === undefined || part.length < pieceHeaderBytes) throw new Error('log command: a malformed chunk');
    const index = part.readUInt32LE(0);
    const count = part.readUInt32LE(4);
    const partial = this.partial;
    const continues = partial !== undefined && partial.origin === chunk.origin && partial.requestId === chunk.requestId && partial.next === index;
    if (!continues) {
      this.partial = undefined;
      if (index !== 0) return undefined;
      this.partial = { origin: chunk.origin, requestId: chunk.requestId, next: 0, pieces: [] };
    }
    const assembling = this.partial as { next: number; pieces: Buffer[] };
    // A copy: the applied entry's buffer is not kept past its event.
    assembling.pieces.push(Buffer.from(part.subarray(pieceHeaderBytes)));
    assembling.next = index + 1;
    if (assembling.next < count) return undefined;
    this.partial = undefined;
    return decodeLogCommand(Buffer.concat(assembling.pieces));
  }

  // Any other command: a command being assembled can no longer complete.
  interrupt(): void {
    this.partial = undefined;
  }
}
