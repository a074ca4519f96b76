// memcached's text protocol on the backend side: replies framed, not parsed, so the
// leader hands its backend's reply to its client byte for byte. Unlike RESP, a text
// protocol reply does not say how long it is: its shape depends on the request (a get's
// VALUE blocks up to END, a stats listing up to END, a meta get's optional data block),
// so the connection tells the framer what each request expects, in send order.

export type ReplyShape =
  | 'line' // one line: STORED, NOT_FOUND, a number, VERSION ..., OK, an error
  | 'values' // VALUE <key> <flags> <bytes> [<cas>] blocks up to END (get, gets, gat, gats)
  | 'stats' // STAT lines up to END
  | 'meta' // one line, followed by a data block when it starts with VA <size> (mg, ms, md, ma, mn, me)
  | 'listing' // LF-separated lines up to END (lru_crawler metadump)
  // A meta command with the quiet flag (q), sent followed by mn: memcached leaves out the
  // reply the flag hides (its own rule, which the reply alone does not tell: ma's success is
  // hidden, its creation of the item is not), so the reply is a 'meta' one or none, then MN.
  | 'quiet';

// A shape as a small number, to travel with a request (the log command's db field) so the
// side that applies it frames the reply without parsing the request.
const shapeCodes: readonly ReplyShape[] = ['line', 'values', 'stats', 'meta', 'listing', 'quiet'];

const mnLine = Buffer.from('MN\r\n');
export function shapeCode(shape: ReplyShape): number {
  return shapeCodes.indexOf(shape);
}
export function shapeOf(code: number): ReplyShape {
  return shapeCodes[code] ?? 'line';
}

// Lines memcached ends any request with when it refuses it.
// ("ERROR <text>" too: lru_crawler's refusals carry one.)
export function isErrorLine(line: string): boolean {
  return line === 'ERROR' || line.startsWith('ERROR ') || line.startsWith('CLIENT_ERROR') || line.startsWith('SERVER_ERROR');
}

export class MemcachedProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemcachedProtocolError';
  }
}

// Longer header lines than this are not memcached's: a desynchronised connection.
const maxLineBytes = 8192;

export class MemcachedReplyFramer {
  private readonly shapes: ReplyShape[] = [];
  private shapeHead = 0;
  private pending: Buffer = Buffer.alloc(0);
  private failure: MemcachedProtocolError | undefined;

  // The next request sent expects a reply of this shape.
  expect(shape: ReplyShape): void {
    this.shapes.push(shape);
  }

  push(chunk: Buffer): Buffer[] {
    if (this.failure !== undefined) throw this.failure;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const replies: Buffer[] = [];
    let start = 0;
    for (;;) {
      const shape = this.shapes[this.shapeHead];
      if (shape === undefined || start >= this.pending.length) break;
      let end: number | undefined;
      try {
        end = this.replyEnd(shape, start);
      } catch (error) {
        this.failure = error as MemcachedProtocolError;
        throw error;
      }
      if (end === undefined) break;
      replies.push(Buffer.from(this.pending.subarray(start, end)));
      start = end;
      this.shapeHead++;
      if (this.shapeHead > 1024) {
        this.shapes.splice(0, this.shapeHead);
        this.shapeHead = 0;
      }
    }
    if (start > 0) this.pending = this.pending.subarray(start);
    if (this.shapes[this.shapeHead] === undefined && this.pending.length > 0) {
      this.failure = new MemcachedProtocolError(`bytes with no request outstanding: ${JSON.stringify(this.pending.toString('latin1', 0, 40))}`);
      throw this.failure;
    }
    return replies;
  }

  // Where the reply starting at `start` ends, or undefined when it is not complete yet.
  private replyEnd(shape: ReplyShape, start: number): number | undefined {
    if (shape === 'listing') return this.listingEnd(start);
    let at = start;
    for (;;) {
      const lineEnd = this.pending.indexOf('\r\n', at);
      if (lineEnd < 0) {
        if (this.pending.length - at > maxLineBytes) throw new MemcachedProtocolError('a reply line longer than any memcached sends');
        return undefined;
      }
      const line = this.pending.toString('latin1', at, lineEnd);
      const next = lineEnd + 2;
      if (shape === 'line') return next;
      if (shape === 'meta') {
        if (!line.startsWith('VA ')) return next;
        return this.afterData(next, Number(line.split(' ')[1]));
      }
      if (shape === 'quiet') {
        if (line === 'MN') return next;
        const after = line.startsWith('VA ') ? this.afterData(next, Number(line.split(' ')[1])) : next;
        if (after === undefined || this.pending.length < after + mnLine.length) return undefined;
        if (!this.pending.subarray(after, after + mnLine.length).equals(mnLine)) throw new MemcachedProtocolError('a quiet meta reply not followed by MN');
        return after + mnLine.length;
      }
      if (line === 'END' || isErrorLine(line)) return next;
      if (shape === 'stats' && line.startsWith('STAT ')) {
        at = next;
        continue;
      }
      if (shape === 'values' && line.startsWith('VALUE ')) {
        const after = this.afterData(next, Number(line.split(' ')[3]));
        if (after === undefined) return undefined;
        at = after;
        continue;
      }
      throw new MemcachedProtocolError(`an unexpected reply line for a ${shape} reply: ${JSON.stringify(line.slice(0, 60))}`);
    }
  }

  // A listing ends with END on a line of its own, or instead of it an error line or BUSY
  // (another lru_crawler job was running: memcached runs one at a time).
  private listingEnd(start: number): number | undefined {
    let at = start;
    for (;;) {
      const lineEnd = this.pending.indexOf('\n', at);
      if (lineEnd < 0) return undefined;
      const line = this.pending.toString('latin1', at, lineEnd).replace(/\r$/, '');
      if (line === 'END' || isErrorLine(line) || line.startsWith('BUSY')) return lineEnd + 1;
      at = lineEnd + 1;
    }
  }

  // After a data block of `length` bytes and its CRLF that starts at `at`.
  private afterData(at: number, length: number): number | undefined {
    if (!Number.isSafeInteger(length) || length < 0) throw new MemcachedProtocolError('a data block with a malformed length');
    if (this.pending.length < at + length + 2) return undefined;
    if (this.pending[at + length] !== 0x0d || this.pending[at + length + 1] !== 0x0a) {
      throw new MemcachedProtocolError('a data block not followed by CRLF');
    }
    return at + length + 2;
  }
}
