// Client requests in memcached's text protocol, framed as memcached 1.6 frames them: a
// line ended by LF (a CR before it dropped), split on spaces; a storage command's line is
// followed by exactly <bytes> + 2 bytes of data (their last two should be CRLF: memcached
// itself checks, and answers "bad data chunk"). Whether a storage line is followed by data
// at all depends on the line being valid, so the parser checks it at least as strictly as
// memcached: a line it lets through with data, memcached also reads with data (otherwise
// the backend connection would fall out of step). Lines it refuses are answered with
// memcached's own error and no data is read, as memcached does.
//
// A binary-protocol request (first byte 0x80) is recognised so the session can answer it
// with a clear error in that protocol.

export const storageCommands = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas']);

// memcached's limits.
export const maxKeyBytes = 250;
// A line (a multi-get's included) longer than this without its LF ends the connection.
export const maxLineBytes = 64 * 1024;

export type MemcachedRequest =
  | {
      kind: 'storage';
      name: string; // set, add, replace, append, prepend, cas
      key: Buffer;
      flags: string;
      exptime: string;
      bytes: number;
      cas: string | undefined;
      noreply: boolean;
      block: Buffer; // the <bytes> + 2 bytes after the line, as received
    }
  // The meta protocol's set: ms <key> <datalen> <flags>*, then the data block. Its flags
  // are memcached's to check (it reads the data away when it refuses them).
  | { kind: 'metaset'; tokens: Buffer[]; bytes: number; block: Buffer }
  | { kind: 'line'; name: string; tokens: Buffer[]; noreply: boolean } // every other command
  // A line the proxy answers itself (memcached's error text); `line`, as received, when the
  // request was a whole line (a follower hands it to the leader as it came).
  | { kind: 'refused'; reply: string; line?: Buffer }
  // A storage command whose data is larger than the backend takes: memcached answers
  // "SERVER_ERROR object too large for cache", reads the data away, and for a set deletes
  // the key (so no stale value outlives the failed set). The data is not kept.
  | { kind: 'oversize'; name: string; key: Buffer; noreply: boolean }
  | { kind: 'binary'; opcode: number; opaque: Buffer };

export class RequestParserError extends Error {}

const storageArity = { plain: 5, cas: 6 }; // tokens, the command name included

export class RequestParser {
  private pending: Buffer = Buffer.alloc(0);
  // A storage line waiting for its data block.
  private awaiting: Extract<MemcachedRequest, { kind: 'storage' | 'metaset' }> | undefined;
  // Bytes of an oversize data block still to read away.
  private skipping = 0;
  private failure: RequestParserError | undefined;

  constructor(private readonly maxBlockBytes: number) {}

  get bufferedBytes(): number {
    return this.pending.length;
  }

  // The requests these bytes complete. Throws RequestParserError (then on every call) when
  // the connection cannot go on: a line too long, a binary request after text ones.
  push(chunk: Buffer): MemcachedRequest[] {
    if (this.failure !== undefined) throw this.failure;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const requests: MemcachedRequest[] = [];
    let at = 0;
    for (;;) {
      if (this.skipping > 0) {
        const skipped = Math.min(this.skipping, this.pending.length - at);
        this.skipping -= skipped;
        at += skipped;
        if (this.skipping > 0) break;
        continue;
      }
      if (this.awaiting !== undefined) {
        const need = this.awaiting.bytes + 2;
        if (this.pending.length - at < need) break;
        requests.push({ ...this.awaiting, block: Buffer.from(this.pending.subarray(at, at + need)) });
        at += need;
        this.awaiting = undefined;
        continue;
      }
      if (at >= this.pending.length) break;
      if (this.pending[at] === 0x80) {
        // The binary protocol's request magic: a 24-byte header.
        if (this.pending.length - at < 24) break;
        requests.push({ kind: 'binary', opcode: this.pending[at + 1] as number, opaque: Buffer.from(this.pending.subarray(at + 12, at + 16)) });
        this.fail('binary protocol');
        break;
      }
      const lineEnd = this.pending.indexOf(0x0a, at);
      if (lineEnd < 0) {
        if (this.pending.length - at > maxLineBytes) {
          requests.push({ kind: 'refused', reply: 'CLIENT_ERROR line too long' });
          this.fail('line too long');
        }
        break;
      }
      const end = lineEnd > at && this.pending[lineEnd - 1] === 0x0d ? lineEnd - 1 : lineEnd;
      const request = this.parseLine(this.pending.subarray(at, end));
      if (request.kind === 'refused') request.line = Buffer.from(this.pending.subarray(at, end));
      at = lineEnd + 1;
      if (request.kind === 'storage' || request.kind === 'metaset') this.awaiting = request;
      else requests.push(request);
      if (request.kind === 'oversize') this.skipping = this.oversizeBytes;
    }
    this.pending = at >= this.pending.length ? Buffer.alloc(0) : Buffer.from(this.pending.subarray(at));
    return requests;
  }

  private oversizeBytes = 0;

  // ms <key> <datalen> <flags>*: refused without reading data where memcached 1.6 does so
  // (too few tokens, a key over 250 bytes, a malformed length); anything else reads the
  // block, and memcached judges the flags.
  private parseMetaSet(tokens: Buffer[]): MemcachedRequest {
    const key = tokens[1];
    const length = tokens[2]?.toString('latin1');
    if (key === undefined || length === undefined) return { kind: 'refused', reply: 'ERROR' };
    const base64 = tokens.slice(3).some((flag) => flag.length === 1 && flag[0] === 0x62 /* b */);
    if (key.length > (base64 ? 340 : maxKeyBytes) || !/^\d{1,10}$/.test(length)) return { kind: 'refused', reply: 'CLIENT_ERROR bad command line format' };
    const bytes = Number(length);
    if (bytes > this.maxBlockBytes) {
      this.oversizeBytes = bytes + 2;
      const mode = tokens.slice(3).find((flag) => flag[0] === 0x4d /* M */)?.toString('latin1');
      return { kind: 'oversize', name: mode === undefined || mode === 'MS' || mode === 'Ms' ? 'set' : 'ms', key: Buffer.from(key), noreply: false };
    }
    return { kind: 'metaset', tokens: tokens.map((token) => Buffer.from(token)), bytes, block: Buffer.alloc(0) };
  }

  private fail(why: string): void {
    this.failure = new RequestParserError(why);
  }

  private parseLine(line: Buffer): MemcachedRequest {
    const tokens = split(line);
    const first = tokens[0];
    if (first === undefined) return { kind: 'refused', reply: 'ERROR' };
    const name = first.toString('latin1');
    const last = tokens[tokens.length - 1]?.toString('latin1');
    const noreply = tokens.length > 1 && last === 'noreply';
    if (name === 'ms') return this.parseMetaSet(tokens);
    if (!storageCommands.has(name)) return { kind: 'line', name, tokens, noreply };
    const arity = name === 'cas' ? storageArity.cas : storageArity.plain;
    if (tokens.length < arity) return { kind: 'refused', reply: 'ERROR' };
    const [, key, flags, exptime, bytes, cas] = tokens.map((token) => token.toString('latin1'));
    const length = Number(bytes);
    const valid =
      (tokens[1] as Buffer).length <= maxKeyBytes &&
      /^\+?\d{1,10}$/.test(flags as string) &&
      Number(flags) <= 0xffffffff &&
      isInt32(exptime as string) &&
      /^\+?\d{1,10}$/.test(bytes as string) &&
      length <= 0x7fffffff - 2 &&
      (name !== 'cas' || (/^\+?\d{1,20}$/.test(cas as string) && BigInt(cas as string) <= 0xffffffffffffffffn));
    if (!valid) return { kind: 'refused', reply: 'CLIENT_ERROR bad command line format' };
    if (length > this.maxBlockBytes) {
      this.oversizeBytes = length + 2;
      return { kind: 'oversize', name, key: Buffer.from(tokens[1] as Buffer), noreply };
    }
    return {
      kind: 'storage', name, key: Buffer.from(tokens[1] as Buffer), flags: flags as string, exptime: exptime as string,
      bytes: length, cas: name === 'cas' ? cas : undefined, noreply, block: Buffer.alloc(0),
    };
  }
}

function isInt32(text: string): boolean {
  return /^[+-]?\d{1,10}$/.test(text) && Number(text) >= -0x80000000 && Number(text) <= 0x7fffffff;
}

// memcached's tokenizer: spaces separate, runs of them included.
function split(line: Buffer): Buffer[] {
  const tokens: Buffer[] = [];
  let start = -1;
  for (let i = 0; i <= line.length; i++) {
    const space = i === line.length || line[i] === 0x20;
    if (space && start >= 0) {
      tokens.push(line.subarray(start, i));
      start = -1;
    } else if (!space && start < 0) start = i;
  }
  return tokens;
}
