// Client requests, parsed the way redis-server parses them (networking.c), so malformed
// input gets Redis' own protocol errors and inline commands (telnet, redis-cli --pipe's
// last line, redis-benchmark's PING_INLINE) work. This is the hot path of every request:
// no per-byte work in JS beyond the length lines, arguments are views into the received
// chunk when a request lies within one.
//
// Redis' rules kept here: a multibulk count above 1024 * 1024 or a non-number is an
// "invalid multibulk length"; an argument not starting with '$' is "expected '$', got
// 'x'"; a bulk length that is not a number, negative or above the limit is an "invalid
// bulk length"; a count of zero or less is an empty request (ignored); an inline line is
// split like sdssplitargs (double quotes with \n \r \t \b \a \\ \" \xHH escapes, single
// quotes with \' only) and unbalanced quotes are an error; an inline line or a count line
// longer than 64 KiB without its end is "too big".

export class ProtocolError extends Error {}

const maxMultibulkCount = 1024 * 1024;
const maxInlineBytes = 64 * 1024;
const cr = 13;
const lf = 10;
const empty = Buffer.alloc(0);

export class RequestParser {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxBulkBytes: number = 512 * 1024 * 1024) {}

  // Bytes received but not yet part of a complete request.
  get bufferedBytes(): number {
    return this.buffer.length;
  }

  // Set once input was malformed (Redis' message): the requests before it were returned,
  // nothing after it will be, and the connection should be closed after replying.
  error: ProtocolError | undefined;

  // Appends `chunk` and returns every complete request (arrays of arguments; an empty
  // request yields nothing), up to malformed input if any (then `error` is set).
  push(chunk: Buffer): Buffer[][] {
    if (this.error !== undefined) return [];
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const requests: Buffer[][] = [];
    let offset = 0;
    try {
      while (offset < this.buffer.length) {
        const parsed = this.buffer[offset] === 0x2a /* * */ ? this.multibulk(offset) : this.inline(offset);
        if (parsed === undefined) break; // incomplete: wait for more bytes
        offset = parsed.next;
        if (parsed.argv.length > 0) requests.push(parsed.argv);
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.error = error;
      this.buffer = Buffer.alloc(0);
      return requests;
    }
    // Keep only the unparsed tail; copy it so the caller's chunk is not retained whole.
    this.buffer = offset === this.buffer.length ? empty : Buffer.from(this.buffer.subarray(offset));
    return requests;
  }

  private line(offset: number, limit: number, tooBig: string): { text: string; next: number } | undefined {
    const end = this.buffer.indexOf(lf, offset);
    if (end < 0) {
      if (this.buffer.length - offset > limit) throw new ProtocolError(tooBig);
      return undefined;
    }
    const stop = end > offset && this.buffer[end - 1] === cr ? end - 1 : end;
    return { text: this.buffer.toString('latin1', offset, stop), next: end + 1 };
  }

  // A count or length line: the common form (a non-negative decimal of at most 15 digits,
  // exact in a double, then CRLF) read
  // straight from the bytes; anything else through the exact string2ll rules. Sets
  // `numberEnd` to the offset after the line; undefined when the line is incomplete.
  private numberLine(offset: number, tooBig: string): number | undefined {
    const buffer = this.buffer;
    const first = buffer[offset];
    if (first !== undefined && first >= 0x31 && first <= 0x39) {
      let value = first - 0x30;
      for (let at = offset + 1; at < offset + 15 && at < buffer.length; at++) {
        const byte = buffer[at] as number;
        if (byte >= 0x30 && byte <= 0x39) {
          value = value * 10 + (byte - 0x30);
          continue;
        }
        if (byte === cr && buffer[at + 1] === lf) {
          this.numberEnd = at + 2;
          return value;
        }
        break;
      }
    } else if (first === 0x30 && buffer[offset + 1] === cr && buffer[offset + 2] === lf) {
      this.numberEnd = offset + 3;
      return 0;
    }
    const line = this.line(offset, maxInlineBytes, tooBig);
    if (line === undefined) return undefined;
    this.numberEnd = line.next;
    return parseLongLong(line.text) ?? Number.NaN;
  }
  private numberEnd = 0;

  private multibulk(start: number): { argv: Buffer[]; next: number } | undefined {
    const count = this.numberLine(start + 1, 'too big mbulk count string');
    if (count === undefined) return undefined;
    if (Number.isNaN(count) || count > maxMultibulkCount) throw new ProtocolError('invalid multibulk length');
    let offset = this.numberEnd;
    if (count <= 0) return { argv: [], next: offset };
    const argv: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (offset >= this.buffer.length) return undefined;
      const type = this.buffer[offset] as number;
      if (type !== 0x24 /* $ */) {
        throw new ProtocolError(`expected '$', got '${String.fromCharCode(type)}'`);
      }
      const length = this.numberLine(offset + 1, 'too big bulk count string');
      if (length === undefined) return undefined;
      if (Number.isNaN(length) || length < 0 || length > this.maxBulkBytes) throw new ProtocolError('invalid bulk length');
      const start = this.numberEnd;
      const end = start + length;
      if (end + 2 > this.buffer.length) return undefined;
      argv.push(this.buffer.subarray(start, end));
      offset = end + 2; // the CRLF after the bulk, as Redis does, is skipped unchecked
    }
    return { argv, next: offset };
  }

  private inline(start: number): { argv: Buffer[]; next: number } | undefined {
    const line = this.line(start, maxInlineBytes, 'too big inline request');
    if (line === undefined) return undefined;
    const argv = splitArgs(this.buffer.subarray(start, start + Buffer.byteLength(line.text, 'latin1')));
    if (argv === undefined) throw new ProtocolError('unbalanced quotes in request');
    return { argv, next: line.next };
  }
}

// string2ll: optional '-', digits without leading zeros ("0" alone), at most 64 bits.
function parseLongLong(text: string): number | undefined {
  if (!/^(0|-?[1-9]\d{0,18})$/.test(text)) return undefined;
  const value = BigInt(text);
  if (value > 9223372036854775807n || value < -9223372036854775808n) return undefined;
  return Number(value);
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0b || byte === 0x0c || byte === 0x0d;
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

// sdssplitargs: undefined on unbalanced quotes (or a closing quote not followed by a space).
export function splitArgs(line: Buffer): Buffer[] | undefined {
  const args: Buffer[] = [];
  let i = 0;
  for (;;) {
    while (i < line.length && isSpace(line[i] as number)) i++;
    if (i >= line.length) return args;
    const current: number[] = [];
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      const byte = line[i];
      if (inDouble) {
        if (byte === undefined) return undefined;
        if (byte === 0x5c /* \ */ && line[i + 1] === 0x78 /* x */ && hexValue(line[i + 2] ?? -1) >= 0 && hexValue(line[i + 3] ?? -1) >= 0) {
          current.push(hexValue(line[i + 2] as number) * 16 + hexValue(line[i + 3] as number));
          i += 3;
        } else if (byte === 0x5c && i + 1 < line.length) {
          i++;
          const escaped = line[i] as number;
          const map: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };
          current.push(map[escaped] ?? escaped);
        } else if (byte === 0x22 /* " */) {
          const after = line[i + 1];
          if (after !== undefined && !isSpace(after)) return undefined;
          done = true;
        } else {
          current.push(byte);
        }
      } else if (inSingle) {
        if (byte === undefined) return undefined;
        if (byte === 0x5c && line[i + 1] === 0x27 /* ' */) {
          i++;
          current.push(0x27);
        } else if (byte === 0x27) {
          const after = line[i + 1];
          if (after !== undefined && !isSpace(after)) return undefined;
          done = true;
        } else {
          current.push(byte);
        }
      } else if (byte === undefined || isSpace(byte)) {
        done = true;
      } else if (byte === 0x22) {
        inDouble = true;
      } else if (byte === 0x27) {
        inSingle = true;
      } else {
        current.push(byte);
      }
      if (byte !== undefined) i++;
    }
    args.push(Buffer.from(current));
  }
}
