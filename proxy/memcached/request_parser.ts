// Client requests in memcached's text protocol, framed as memcached 1.6 frames them: a
// line ended by LF (a CR before it dropped; a NUL byte ends it early, as memcached reads it
// with strlen), split on spaces; a storage command's line is
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
  // A line the proxy answers itself (memcached's error text; nothing under `noreply`, which
  // memcached honours for a refused storage line too); `line`, as received, when the
  // request was a whole line (a follower hands it to the leader as it came).
  | { kind: 'refused'; reply: string; line?: Buffer; noreply?: boolean }
  // A storage command whose data is larger than the backend takes: memcached answers
  // "SERVER_ERROR object too large for cache", reads the data away, and for a set (an ms in
  // any valid mode) deletes the key (so no stale value outlives the failed set). The data is
  // not kept. `tokens`: an ms line's, as received (its mode and b flag decide the delete).
  | { kind: 'oversize'; name: string; key: Buffer; noreply: boolean; tokens?: Buffer[] }
  | { kind: 'binary'; opcode: number; opaque: Buffer };

export class RequestParserError extends Error {}

// Tokens memcached takes on a storage line, the command name included (WANT_TOKENS_OR):
// the last one may be noreply (or anything: memcached ignores it).
const storageArity = { plain: [5, 6], cas: [6, 7] };

// Where memcached honours a trailing noreply on a line (set_noreply_maybe), by the numbers of
// tokens it takes there; elsewhere "noreply" is an argument like any other (a key of get or
// gat, which answer it), and with another number of tokens memcached answers ERROR.
const noreplyTokens: Record<string, readonly number[]> = {
  incr: [3, 4], decr: [3, 4], touch: [3, 4], delete: [3, 4], flush_all: [2, 3], verbosity: [2, 3],
};

// memcached's process_mset_command refuses these without reading the data block.
const metaSetMaxTokens = 19; // ntokens > MFLAG_MAX_OPT_LENGTH (20, its terminal token included)
const maxDataLength = 0x7fffffff - 2; // INT_MAX - 2

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

  // ms <key> <datalen> <flags>*: refused without reading data where memcached 1.6.18 does so
  // (in its order: fewer than two tokens, a key over 250 bytes before any base64 decoding,
  // no length, 20 tokens or more, a length strtol does not take or out of range); anything
  // else reads the block, and memcached judges the flags. Errors show despite the q flag.
  private parseMetaSet(tokens: Buffer[]): MemcachedRequest {
    const key = tokens[1];
    if (key === undefined) return { kind: 'refused', reply: 'ERROR' };
    if (key.length > maxKeyBytes || tokens.length === 2) return { kind: 'refused', reply: 'CLIENT_ERROR bad command line format' };
    if (tokens.length > metaSetMaxTokens) return { kind: 'refused', reply: 'CLIENT_ERROR options flags too long' };
    const bytes = strtol32(tokens[2]);
    if (bytes === undefined || bytes < 0 || bytes > maxDataLength) return { kind: 'refused', reply: 'CLIENT_ERROR bad command line format' };
    const copies = tokens.map((token) => Buffer.from(token));
    if (bytes > this.maxBlockBytes) {
      this.oversizeBytes = bytes + 2;
      return { kind: 'oversize', name: 'ms', key: Buffer.from(key), noreply: false, tokens: copies };
    }
    return { kind: 'metaset', tokens: copies, bytes, block: Buffer.alloc(0) };
  }

  private fail(why: string): void {
    this.failure = new RequestParserError(why);
  }

  private parseLine(whole: Buffer): MemcachedRequest {
    const nul = whole.indexOf(0);
    const tokens = split(nul < 0 ? whole : whole.subarray(0, nul));
    const first = tokens[0];
    if (first === undefined) return { kind: 'refused', reply: 'ERROR' };
    const name = first.toString('latin1');
    const last = tokens[tokens.length - 1]?.toString('latin1');
    if (name === 'ms') return this.parseMetaSet(tokens);
    if (!storageCommands.has(name)) {
      const noreply = last === 'noreply' && noreplyTokens[name]?.includes(tokens.length) === true;
      return { kind: 'line', name, tokens, noreply };
    }
    const arity = name === 'cas' ? storageArity.cas : storageArity.plain;
    if (!arity.includes(tokens.length)) return { kind: 'refused', reply: 'ERROR' };
    const noreply = tokens.length === arity[1] && last === 'noreply';
    // Numbers as memcached reads them (strtoul, strtol, strtoull), kept as the values it
    // takes: the line memcached gets is rebuilt from them.
    const flags = strtoul32(tokens[2]);
    const exptime = strtol32(tokens[3]);
    const length = strtol32(tokens[4]);
    const cas = name === 'cas' ? strtoull(tokens[5]) : 0n;
    const valid =
      (tokens[1] as Buffer).length <= maxKeyBytes && flags !== undefined && exptime !== undefined && length !== undefined &&
      cas !== undefined && length >= 0 && length <= maxDataLength;
    if (!valid) return { kind: 'refused', reply: 'CLIENT_ERROR bad command line format', noreply };
    if (length > this.maxBlockBytes) {
      this.oversizeBytes = length + 2;
      return { kind: 'oversize', name, key: Buffer.from(tokens[1] as Buffer), noreply };
    }
    return {
      kind: 'storage', name, key: Buffer.from(tokens[1] as Buffer), flags: String(flags), exptime: String(exptime),
      bytes: length, cas: name === 'cas' ? String(cas) : undefined, noreply, block: Buffer.alloc(0),
    };
  }
}

// memcached reads numbers with strtol, strtoul and strtoull (util.c's safe_strto*, longs of
// 64 bits): white space first, a sign, decimal digits, then the token's end or white space;
// a value beyond 64 bits fails; the unsigned ones refuse a '-' that makes the value negative
// as a signed number; the 32-bit ones then keep the low 32 bits (a length of 4294967297 is
// 1). Undefined where memcached refuses the token.
const cSpaces = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);
const two64 = 1n << 64n;

function strtoNumber(token: Buffer | undefined, unsigned: boolean): bigint | undefined {
  if (token === undefined) return undefined;
  let at = 0;
  while (at < token.length && cSpaces.has(token[at] as number)) at++;
  const negative = token[at] === 0x2d; /* - */
  if (negative || token[at] === 0x2b /* + */) at++;
  const digits = at;
  while (at < token.length && (token[at] as number) >= 0x30 && (token[at] as number) <= 0x39) at++;
  if (at === digits || (at < token.length && !cSpaces.has(token[at] as number))) return undefined;
  const magnitude = BigInt(token.toString('latin1', digits, at));
  if (unsigned) {
    if (magnitude >= two64) return undefined;
    const value = negative ? (two64 - magnitude) % two64 : magnitude;
    return value >= 1n << 63n && token.includes(0x2d) ? undefined : value;
  }
  const value = negative ? -magnitude : magnitude;
  return value < -(1n << 63n) || value >= 1n << 63n ? undefined : value;
}

// safe_strtol's int32_t.
export function strtol32(token: Buffer | undefined): number | undefined {
  const value = strtoNumber(token, false);
  return value === undefined ? undefined : Number(BigInt.asIntN(32, value));
}

// safe_strtoul's uint32_t.
function strtoul32(token: Buffer | undefined): number | undefined {
  const value = strtoNumber(token, true);
  return value === undefined ? undefined : Number(BigInt.asUintN(32, value));
}

// safe_strtoull's uint64_t.
function strtoull(token: Buffer | undefined): bigint | undefined {
  return strtoNumber(token, true);
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
