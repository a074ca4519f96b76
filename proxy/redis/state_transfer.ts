// State transfer between replicas' redis-servers: how a replica whose backend lost its
// state (it died, restarted empty, or ran a write the log does not hold), or whose engine
// fell behind the recycled log, gets back in step without anything being lost.
//
// The donor (any healthy replica, a follower by preference) holds its apply stream right
// after an entry, so its backend stops changing, and streams every key as DUMP bytes with
// its absolute expiry, then the log cursor just past that entry; it lets the held entries
// go after. The recipient empties its backend, RESTOREs every key, and tells its engine to
// resume from the donor's cursor (Replica.resumeFromStateTransfer): from then on it
// applies the log from the entry after the snapshot, like everyone else.
//
// The snapshot travels over the donor's client port, as `MU SNAPSHOT` on a connection of
// its own (after `MU PEER`, which proves with the cluster secret that the recipient is a
// member), as RESP frames:
//   *3 $8 snapshot :<next index> :<position>
//   *5 $5 chunk :<origin> :<request id> :<next piece> $<pieces so far>   (only when a command
//      larger than an entry is part-way through assembly there)
//   *2 $9 functions $<FUNCTION DUMP payload>
//   *4 :<db> $<key> $<DUMP payload> :<expire at, unix ms, or -1>     (one per key)
//   *2 $3 end :<keys>
// Expiry is absolute (PEXPIRETIME), so a key expires at the same moment on both servers.
import net from 'node:net';

import { encodeCommand, ReplyFramer } from '../../adapters/redis/resp.js';
import type { RedisBackend } from '../../adapters/redis/redis_backend.js';
import type { BackendChannel } from './backend_channel.js';
import type { PartialChunk } from './log_command.js';

export interface SnapshotCursor {
  nextIndex: number;
  position: number;
  chunk?: PartialChunk; // a command part-way through assembly at that point (log_command.ts)
}

const scanBatch = 256;

// --- the donor ---------------------------------------------------------------------------

// Streams the backend's keys (the apply stream is held by the caller, so nothing changes
// meanwhile except keys that expire) through `write`, which resolves once the frame may be
// followed by more (socket backpressure). Returns how many keys were sent.
export async function streamSnapshot(channel: BackendChannel, cursor: SnapshotCursor, write: (frame: Buffer) => Promise<void>): Promise<number> {
  await write(encodeFrame([bulk('snapshot'), integer(cursor.nextIndex), integer(cursor.position)]));
  const chunk = cursor.chunk;
  if (chunk !== undefined) await write(encodeFrame([bulk('chunk'), integer(chunk.origin), integer(chunk.requestId), integer(chunk.next), bulk(chunk.bytes)]));
  // The function library is replicated state too (FUNCTION LOAD goes through the log), which
  // no key holds: without it, an FCALL would fail on the recipient alone.
  const [functions] = await channel.send(0, [encodeCommand(['FUNCTION', 'DUMP'])]);
  const library = bulkBytes(functions as Buffer);
  if (library === undefined) throw new Error(`FUNCTION DUMP answered ${(functions as Buffer).toString('latin1', 0, 60).trim()}`);
  await write(encodeFrame([bulk('functions'), bulk(library)]));
  const [info] = await channel.send(0, [encodeCommand(['INFO', 'keyspace'])]);
  const databases = [...bulkText(info as Buffer).matchAll(/^db(\d+):keys=/gm)].map((match) => Number(match[1]));
  let sent = 0;
  for (const db of databases) {
    let scanCursor = '0';
    do {
      const [reply] = await channel.send(db, [encodeCommand(['SCAN', scanCursor, 'COUNT', String(scanBatch)])]);
      const page = parseScanReply(reply as Buffer);
      scanCursor = page.cursor;
      if (page.keys.length === 0) continue;
      const replies = await channel.send(
        db,
        page.keys.flatMap((key) => [encodeCommand([Buffer.from('DUMP'), key]), encodeCommand([Buffer.from('PEXPIRETIME'), key])]),
      );
      for (let i = 0; i < page.keys.length; i++) {
        const dump = bulkBytes(replies[2 * i] as Buffer);
        if (dump === undefined) continue; // expired since SCAN saw it
        const expireAt = Number(integerText(replies[2 * i + 1] as Buffer));
        if (expireAt === -2) continue;
        await write(encodeFrame([integer(db), bulk(page.keys[i] as Buffer), bulk(dump), integer(expireAt)]));
        sent++;
      }
    } while (scanCursor !== '0');
  }
  await write(encodeFrame([bulk('end'), integer(sent)]));
  return sent;
}

// --- the recipient -----------------------------------------------------------------------

export interface FetchSnapshotOptions {
  host: string;
  port: number;
  greeting: Buffer; // sent first; its reply must be +OK
  // Where the keys go: an emptied backend.
  backend: RedisBackend;
  timeoutMs: number; // without a frame for this long, the transfer fails
}

// Copies a donor's snapshot into `backend`; resolves with the cursor to resume from and
// the number of keys. Rejects (the caller tries again, from empty) on any refusal,
// malformed frame, failed RESTORE or silence.
export function fetchSnapshot(options: FetchSnapshotOptions): Promise<SnapshotCursor & { keys: number }> {
  const socket = net.connect(options.port, options.host);
  const framer = new ReplyFramer();
  let greetingPending = true;
  let cursor: SnapshotCursor | undefined;
  let partial: PartialChunk | undefined;
  let restored = 0;
  let batch: Buffer[] = [];
  let database = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const replies = await options.backend.sendMany(batch);
    batch = [];
    const failed = replies.find((reply) => reply[0] === 0x2d /* - */);
    if (failed !== undefined) throw new Error(`RESTORE failed on this replica's backend: ${failed.toString('latin1').trim()}`);
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const silence = () => setTimeout(() => finish(new Error(`nothing from the donor for ${options.timeoutMs} ms`)), options.timeoutMs);
    let timer = silence();
    const finish = (error: Error | undefined, result?: SnapshotCursor & { keys: number }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined && result !== undefined) resolve(result);
      else reject(error);
    };
    // One chunk at a time: the socket is paused while a chunk's RESTOREs are written, so a
    // fast donor cannot fill this process's memory.
    const onChunk = async (chunk: Buffer) => {
      socket.pause();
      clearTimeout(timer);
      try {
        for (const frame of framer.push(chunk)) {
          if (frame[0] === 0x2d /* - */) throw new Error(`the donor refused: ${frame.toString('latin1', 1).trim()}`);
          if (greetingPending) {
            greetingPending = false;
            continue;
          }
          const fields = parseFrame(frame);
          if (cursor === undefined) {
            if (fields[0] !== 'snapshot' || fields.length !== 3) throw new Error('the donor sent no snapshot header');
            cursor = { nextIndex: Number(fields[1]), position: Number(fields[2]) };
            continue;
          }
          if (fields[0] === 'end') {
            // The connection is handed to the apply stream, which expects database 0.
            batch.push(encodeCommand(['SELECT', '0']));
            await flush();
            if (Number(fields[1]) !== restored) throw new Error(`the donor sent ${restored} keys but counted ${String(fields[1])}`);
            finish(undefined, partial === undefined ? { ...cursor, keys: restored } : { ...cursor, chunk: partial, keys: restored });
            return;
          }
          if (fields[0] === 'functions' && fields.length === 2) {
            // FLUSH: libraries this backend kept (FLUSHALL leaves them) go first.
            batch.push(encodeCommand([Buffer.from('FUNCTION'), Buffer.from('RESTORE'), fields[1] as Buffer, Buffer.from('FLUSH')]));
            continue;
          }
          if (fields[0] === 'chunk' && fields.length === 5) {
            const [, origin, requestId, next, bytes] = fields as [string, string, string, string, Buffer];
            partial = { origin: Number(origin), requestId: Number(requestId), next: Number(next), bytes: Buffer.from(bytes) };
            continue;
          }
          if (fields.length !== 4) throw new Error('a malformed key frame');
          const [db, key, dump, expireAt] = fields as [string, Buffer, Buffer, string];
          if (Number(db) !== database) {
            batch.push(encodeCommand(['SELECT', db]));
            database = Number(db);
          }
          const ttl = expireAt === '-1' ? '0' : expireAt;
          batch.push(encodeCommand([Buffer.from('RESTORE'), key, Buffer.from(ttl), dump, Buffer.from('REPLACE'), ...(ttl === '0' ? [] : [Buffer.from('ABSTTL')])]));
          restored++;
          if (batch.length >= scanBatch) await flush();
        }
      } catch (error) {
        finish(error as Error);
        return;
      }
      timer = silence();
      socket.resume();
    };
    socket.on('data', (chunk: Buffer) => void onChunk(chunk));
    socket.on('error', (error: Error) => finish(new Error(`the connection to the donor failed: ${error.message}`)));
    socket.once('close', () => finish(new Error('the donor closed the connection before the end of the snapshot')));
    socket.write(options.greeting);
    socket.write(encodeCommand(['MU', 'SNAPSHOT']));
  });
}

// --- frames --------------------------------------------------------------------------------

function bulk(value: Buffer | string): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

function integer(value: number): Buffer {
  return Buffer.from(`:${value}\r\n`);
}

function encodeFrame(items: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(`*${items.length}\r\n`), ...items]);
}

// A frame's fields: integers as their decimal text, bulk strings as bytes, except the
// first ('snapshot', 'end', or the db number) as text.
function parseFrame(frame: Buffer): Array<string | Buffer> {
  const line = (at: number): [string, number] => {
    const end = frame.indexOf('\r\n', at);
    if (end < 0) throw new Error('a malformed snapshot frame');
    return [frame.toString('latin1', at + 1, end), end + 2];
  };
  if (frame[0] !== 0x2a /* * */) throw new Error('a snapshot frame must be an array');
  const [countText, first] = line(0);
  const fields: Array<string | Buffer> = [];
  let offset = first;
  for (let i = 0; i < Number(countText); i++) {
    const type = frame[offset];
    const [text, next] = line(offset);
    if (type === 0x3a /* : */) {
      fields.push(text);
      offset = next;
    } else if (type === 0x24 /* $ */) {
      const bytes = frame.subarray(next, next + Number(text));
      fields.push(i === 0 ? bytes.toString('latin1') : bytes);
      offset = next + Number(text) + 2;
    } else {
      throw new Error('a malformed snapshot frame');
    }
  }
  return fields;
}

function bulkText(reply: Buffer): string {
  return bulkBytes(reply)?.toString('latin1') ?? '';
}

function bulkBytes(reply: Buffer): Buffer | undefined {
  if (reply[0] !== 0x24 /* $ */) return undefined;
  const lineEnd = reply.indexOf('\r\n');
  const length = Number(reply.toString('latin1', 1, lineEnd));
  return length < 0 ? undefined : reply.subarray(lineEnd + 2, lineEnd + 2 + length);
}

function integerText(reply: Buffer): string {
  return reply[0] === 0x3a /* : */ ? reply.toString('latin1', 1, reply.length - 2) : 'NaN';
}

// SCAN's reply: *2 $cursor *n ($key)*
export function parseScanReply(reply: Buffer): { cursor: string; keys: Buffer[] } {
  if (reply.toString('latin1', 0, 4) !== '*2\r\n') throw new Error(`SCAN answered ${reply.toString('latin1', 0, 60)}`);
  let offset = 4;
  const readBulk = (): Buffer => {
    const lineEnd = reply.indexOf('\r\n', offset);
    const length = Number(reply.toString('latin1', offset + 1, lineEnd));
    const start = lineEnd + 2;
    offset = start + length + 2;
    return reply.subarray(start, start + length);
  };
  const cursor = readBulk().toString('latin1');
  const countEnd = reply.indexOf('\r\n', offset);
  const count = Number(reply.toString('latin1', offset + 1, countEnd));
  offset = countEnd + 2;
  const keys: Buffer[] = [];
  for (let i = 0; i < count; i++) keys.push(readBulk());
  return { cursor, keys };
}
