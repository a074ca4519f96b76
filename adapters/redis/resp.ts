// RESP2 on the hot path: commands are encoded into one Buffer, and replies are framed, not
// parsed: each reply comes out as the exact bytes the backend sent, so the leader can hand
// them to its client unchanged (`$-1` stays `$-1`, `*-1` stays `*-1`, error text is kept).
//
// The framer never looks at a bulk payload: a `$<n>` header says how many bytes follow,
// so payloads (binary, CRLF inside, tens of MB) are counted, not scanned. Header lines are
// found with Buffer.indexOf. A reply that lies within one chunk is returned as a slice of
// that chunk (no copy); one that spans chunks is assembled once, at its end, from the
// slices of the chunks it spans (linear, however many chunks).

const CR = 13;
const LF = 10;
const MINUS = 45;
const ZERO = 48;
const NINE = 57;

const PLUS = 43; // +  simple string
const DASH = 45; // -  error
const COLON = 58; // :  integer
const DOLLAR = 36; // $  bulk string
const STAR = 42; // *  array

/** Default for `ReplyFramer`'s limit on the size of one reply (the whole reply, nested ones included). */
export const DEFAULT_MAX_REPLY_BYTES = 512 * 1024 * 1024;

// `$`, `*` and `:` lines: the type byte and at most 20 characters (a signed 64-bit integer).
const MAX_NUMBER_LINE = 21;
// Lengths and counts above this cannot be right and would lose precision.
const MAX_LENGTH_DIGITS = 15;
// The smallest reply element (`+\r\n`): bounds how many elements a reply of the limit can hold.
const MIN_ELEMENT_BYTES = 3;

/** Malformed bytes from the backend. The framer that threw it throws it again on every later push. */
export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespError';
  }
}

function decimalDigits(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

// Writes `<prefix><n>\r\n` at offset; returns the offset after it.
function writeHeader(buf: Buffer, offset: number, prefix: number, n: number, digits: number): number {
  buf[offset] = prefix;
  let at = offset + digits;
  do {
    buf[at--] = ZERO + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  at = offset + 1 + digits;
  buf[at] = CR;
  buf[at + 1] = LF;
  return at + 2;
}

/**
 * Encodes one command as a RESP2 array of bulk strings, in one allocation. Strings are
 * written as UTF-8; Buffers as they are.
 */
export function encodeCommand(argv: ReadonlyArray<Buffer | string>): Buffer {
  const count = argv.length;
  if (count === 0) throw new RangeError('encodeCommand: a command needs at least one argument');
  const countDigits = decimalDigits(count);
  let size = 3 + countDigits;
  for (let i = 0; i < count; i++) {
    const arg = argv[i]!;
    const length = typeof arg === 'string' ? Buffer.byteLength(arg, 'utf8') : arg.length;
    size += 5 + decimalDigits(length) + length;
  }
  const buf = Buffer.allocUnsafe(size);
  let offset = writeHeader(buf, 0, STAR, count, countDigits);
  for (let i = 0; i < count; i++) {
    const arg = argv[i]!;
    if (typeof arg === 'string') {
      // One byteLength per string argument above and one here keeps the encoder free of
      // temporary arrays; arguments are short.
      const length = Buffer.byteLength(arg, 'utf8');
      offset = writeHeader(buf, offset, DOLLAR, length, decimalDigits(length));
      offset += buf.write(arg, offset, length, 'utf8');
    } else {
      offset = writeHeader(buf, offset, DOLLAR, arg.length, decimalDigits(arg.length));
      offset += arg.copy(buf, offset);
    }
    buf[offset] = CR;
    buf[offset + 1] = LF;
    offset += 2;
  }
  return buf;
}

/**
 * Decodes one command that `encodeCommand` produced back into its arguments (slices of
 * `encoded`, no copies). For the proxy's own log records only: it trusts the framing and
 * throws RespError on anything else.
 */
export function decodeCommand(encoded: Buffer): Buffer[] {
  const readNumber = (prefix: number, at: number): [number, number] => {
    if (encoded[at] !== prefix) throw new RespError(`decodeCommand: expected ${String.fromCharCode(prefix)} at ${at}`);
    const end = encoded.indexOf(CR, at);
    if (end < 0 || encoded[end + 1] !== LF) throw new RespError('decodeCommand: unterminated header line');
    return [Number(encoded.toString('latin1', at + 1, end)), end + 2];
  };
  const [count, first] = readNumber(STAR, 0);
  const argv: Buffer[] = [];
  let offset = first;
  for (let i = 0; i < count; i++) {
    const [length, start] = readNumber(DOLLAR, offset);
    if (start + length + 2 > encoded.length) throw new RespError('decodeCommand: argument runs past the end');
    argv.push(encoded.subarray(start, start + length));
    offset = start + length + 2;
  }
  if (offset !== encoded.length) throw new RespError('decodeCommand: trailing bytes');
  return argv;
}

function preview(buf: Buffer, start: number, end: number): string {
  const limit = Math.min(end, start + 40);
  return JSON.stringify(buf.toString('latin1', start, limit)) + (end > limit ? '...' : '');
}

function isReplyType(byte: number): boolean {
  return byte === PLUS || byte === DASH || byte === COLON || byte === DOLLAR || byte === STAR;
}

/**
 * Incremental RESP2 reply framer: feed it the chunks of a connection in order; each push
 * returns the replies that it completed, in order, each the exact bytes of one reply.
 * Throws RespError on malformed bytes (and on every push after that).
 */
export class ReplyFramer {
  readonly maxReplyBytes: number;

  // The reply in progress. `pending` counts the values still to read (0: between replies);
  // it is 1 from the first byte of a reply until its first line is complete.
  private pending = 0;
  // Bytes of the current bulk payload still to come, its CRLF included.
  private bulkRemaining = 0;
  // Slices of the earlier chunks that the reply in progress spans.
  private parts: Buffer[] = [];
  private partsBytes = 0;
  // A header line split across chunks: its slices so far (also in `parts`).
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  private failure: RespError | null = null;

  constructor(maxReplyBytes: number = DEFAULT_MAX_REPLY_BYTES) {
    if (!Number.isSafeInteger(maxReplyBytes) || maxReplyBytes < MIN_ELEMENT_BYTES) {
      throw new RangeError(`ReplyFramer: maxReplyBytes must be an integer >= ${MIN_ELEMENT_BYTES}, got ${maxReplyBytes}`);
    }
    this.maxReplyBytes = maxReplyBytes;
  }

  /** True between replies: no partial reply is buffered. */
  get idle(): boolean {
    return this.pending === 0 && this.bulkRemaining === 0 && this.lineBytes === 0;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.failure !== null) throw this.failure;
    const replies: Buffer[] = [];
    try {
      this.frame(chunk, replies);
    } catch (error) {
      if (error instanceof RespError) {
        this.failure = error;
        this.parts = [];
        this.lineParts = [];
      }
      throw error;
    }
    return replies;
  }

  private fail(message: string): never {
    throw new RespError(message);
  }

  private frame(chunk: Buffer, replies: Buffer[]): void {
    const end = chunk.length;
    let pos = 0;
    // Where the reply in progress starts in this chunk (0 when it started in an earlier one).
    let start = 0;
    while (pos < end) {
      if (this.bulkRemaining > 0) {
        const remaining = this.bulkRemaining;
        const available = end - pos;
        if (remaining > available) {
          // The whole rest of the chunk is payload; its last byte may be the CR.
          if (remaining === available + 1 && chunk[end - 1] !== CR) this.fail('bulk string not followed by CRLF');
          this.bulkRemaining = remaining - available;
          pos = end;
          break;
        }
        // The payload ends in this chunk (its CR may have been the last byte of the previous one).
        if (remaining >= 2 && chunk[pos + remaining - 2] !== CR) this.fail('bulk string not followed by CRLF');
        if (chunk[pos + remaining - 1] !== LF) this.fail('bulk string not followed by CRLF');
        pos += remaining;
        this.bulkRemaining = 0;
      } else {
        // A header line.
        const continuing = this.lineBytes > 0;
        let type: number;
        if (continuing) {
          type = this.lineParts[0]![0]!;
        } else {
          type = chunk[pos]!;
          if (!isReplyType(type)) this.fail(`unexpected reply type byte 0x${type.toString(16).padStart(2, '0')} in ${preview(chunk, pos, end)}`);
          if (this.pending === 0) {
            this.pending = 1;
            start = pos;
          }
        }
        const lf = chunk.indexOf(LF, pos);
        if (lf === -1) {
          this.lineParts.push(chunk.subarray(pos));
          this.lineBytes += end - pos;
          if (type !== PLUS && type !== DASH && this.lineBytes > MAX_NUMBER_LINE + 1) {
            this.fail(`length line too long: ${preview(Buffer.concat(this.lineParts), 0, this.lineBytes)}`);
          }
          pos = end;
          break;
        }
        const replyBytes = this.partsBytes + (lf + 1 - start);
        if (replyBytes > this.maxReplyBytes) this.fail(`reply larger than ${this.maxReplyBytes} bytes`);
        // The byte before the LF must be a CR; it may be the last byte of the previous chunk.
        let beforeLf: number;
        if (lf > pos) beforeLf = chunk[lf - 1]!;
        else if (continuing) {
          const last = this.lineParts[this.lineParts.length - 1]!;
          beforeLf = last[last.length - 1]!;
        } else beforeLf = -1; // an empty line
        if (beforeLf !== CR || (!continuing && lf - pos < 2)) {
          this.fail(`reply line not ended by CRLF: ${preview(chunk, pos, lf + 1)}`);
        }
        if (type === PLUS || type === DASH) {
          this.pending--;
        } else if (continuing) {
          this.lineParts.push(chunk.subarray(pos, lf + 1));
          const line = Buffer.concat(this.lineParts, this.lineBytes + lf + 1 - pos);
          this.numberLine(type, line, 0, line.length - 2, replyBytes);
        } else {
          this.numberLine(type, chunk, pos, lf - 1, replyBytes);
        }
        if (continuing) {
          this.lineParts = [];
          this.lineBytes = 0;
        }
        pos = lf + 1;
      }
      if (this.pending === 0 && this.bulkRemaining === 0) {
        if (this.parts.length === 0) {
          replies.push(chunk.subarray(start, pos));
        } else {
          this.parts.push(chunk.subarray(0, pos));
          replies.push(Buffer.concat(this.parts, this.partsBytes + pos));
          this.parts = [];
          this.partsBytes = 0;
        }
        start = pos;
      }
    }
    if (this.pending > 0 || this.bulkRemaining > 0) {
      this.parts.push(start === 0 ? chunk : chunk.subarray(start));
      this.partsBytes += end - start;
      if (this.partsBytes > this.maxReplyBytes) this.fail(`reply larger than ${this.maxReplyBytes} bytes`);
    }
  }

  // A `:`, `$` or `*` line: line[start] is the type byte, line[cr] the CR. `replyBytes`:
  // the bytes of the reply so far, this line included.
  private numberLine(type: number, line: Buffer, start: number, cr: number, replyBytes: number): void {
    const first = start + 1;
    if (cr - start > MAX_NUMBER_LINE) this.fail(`length line too long: ${preview(line, start, cr)}`);
    if (type === COLON) {
      let at = first;
      if (line[at] === MINUS) at++;
      if (at === cr) this.fail(`malformed integer reply: ${preview(line, start, cr)}`);
      for (; at < cr; at++) {
        const byte = line[at]!;
        if (byte < ZERO || byte > NINE) this.fail(`malformed integer reply: ${preview(line, start, cr)}`);
      }
      this.pending--;
      return;
    }
    // `$` or `*`: a length, or -1 for nil.
    let n = 0;
    if (line[first] === MINUS) {
      if (cr !== first + 2 || line[first + 1] !== ZERO + 1) this.fail(`negative length other than -1: ${preview(line, start, cr)}`);
      n = -1;
    } else {
      if (cr === first || cr - first > MAX_LENGTH_DIGITS) this.fail(`malformed length: ${preview(line, start, cr)}`);
      for (let at = first; at < cr; at++) {
        const byte = line[at]!;
        if (byte < ZERO || byte > NINE) this.fail(`malformed length: ${preview(line, start, cr)}`);
        n = n * 10 + (byte - ZERO);
      }
    }
    this.pending--;
    if (n <= 0) {
      // Nil bulk, nil array, empty array; `$0` still has its CRLF to come.
      if (type === DOLLAR && n === 0) this.bulkRemaining = 2;
      return;
    }
    if (type === DOLLAR) {
      if (replyBytes + n + 2 > this.maxReplyBytes) this.fail(`bulk string of ${n} bytes: reply larger than ${this.maxReplyBytes} bytes`);
      this.bulkRemaining = n + 2;
    } else {
      if (replyBytes + n * MIN_ELEMENT_BYTES > this.maxReplyBytes) {
        this.fail(`array of ${n} elements: reply larger than ${this.maxReplyBytes} bytes`);
      }
      this.pending += n;
    }
  }
}
