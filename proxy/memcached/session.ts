// One client connection of the memcached front end. Requests are framed as memcached
// frames them (request_parser.ts) and answered in request order:
//   writes (set, add, replace, append, prepend, cas, incr, decr, delete, touch, flush_all,
//           gat, gats)  -> the log, expirations made absolute; the reply is this replica's
//                          memcached's answer to the applied command
//   reads (get, gets)   -> this replica's memcached, after a barrier entry in the
//                          linearizable read mode, after the connection's last write always
//   version, verbosity, stats, me -> this replica's own memcached (stats gains the proxy's lines)
//   meta commands: ms, md, ma and mg with T or N are writes, mg otherwise a read; with the
//           quiet flag (q) they go to memcached followed by mn, so that every request has a
//           reply and memcached itself decides what the flag hides
// `noreply` is honoured as memcached honours it: nothing is sent back, but the command is
// replicated and applied in order like any other, and the connection's later requests
// come after it. Commands that would act on one server only (shutdown, slabs, lru_crawler,
// watch, ...) are refused.
import type net from 'node:net';

import type { ReplyShape } from '../../adapters/memcached/memcached_protocol.js';
import { OrderedReplies, type ReplySlot } from '../redis/ordered_replies.js';
import { absoluteExptime, exptimeIndex } from './determinism.js';
import type { MemcachedFrontEnd } from './front_end.js';
import { MemcachedLeaderLink } from './leader_link.js';
import { line } from './replies.js';
import { maxLineBytes, RequestParser, RequestParserError, type MemcachedRequest } from './request_parser.js';

const writeLines = new Set(['incr', 'decr', 'delete', 'touch', 'flush_all', 'gat', 'gats']);
const localLines = new Set(['version', 'verbosity']);
// memcached commands the proxy does not pass on: each acts on one server only.
const oneServerOnly = new Set([
  'shutdown', 'slabs', 'lru_crawler', 'lru', 'watch', 'cache_memlimit', 'extstore', 'debugtime', 'misbehave', 'mcp', 'verbosity_all', 'refresh_certs',
]);
// The meta protocol's quiet flag (q) hides a command's common reply (mg's miss, the success
// of ms, md and ma: by memcached's own rules, which its reply alone does not tell). The
// backend connection needs a reply to every request, so a quiet command goes to memcached
// followed by mn: what memcached shows of it, then MN, which the proxy takes off.
const mnRequest = Buffer.from('mn\r\n');
const mnReply = Buffer.from('MN\r\n');

// memcached ends a connection on which more than this many bytes arrive without a line
// end, unless they start a get or gets (a long multi-get); the backend connection is
// shared and pipelined, so a longer line may arrive in pieces and end it (the replica then
// stops). Such a line ends the client's connection instead, as memcached's might.
const maxBackendLineBytes = 2048;

const crlf = Buffer.from('\r\n');

export class MemcachedSession {
  private readonly parser: RequestParser;
  private readonly replies = new OrderedReplies();
  private lastWriteRequestId: number | undefined;
  // Handed over by a follower (mu_forwarded): never handed over again.
  private forwarded = false;
  // Set once this connection is relayed to the leader (leader_link.ts).
  private upstream: { link: MemcachedLeaderLink; onRoleChange: () => void } | undefined;
  private closed = false;
  private ending = false;
  private paused = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly front: MemcachedFrontEnd,
  ) {
    this.parser = new RequestParser(front.maxItemBytes);
    socket.setNoDelay(true);
    if (front.options.idleTimeoutMs > 0) socket.setTimeout(front.options.idleTimeoutMs, () => this.close());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('drain', () => this.resumeIfRoom());
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    let requests: MemcachedRequest[];
    let failed = false;
    try {
      requests = this.parser.push(chunk);
    } catch (error) {
      if (!(error instanceof RequestParserError)) throw error;
      requests = [];
      failed = true;
    }
    for (const request of requests) {
      if (this.closed || this.ending) return;
      this.front.counters.requests++;
      if (this.upstream !== undefined || (this.needsLeader(request) && this.handOver())) this.forwardUp(request);
      else this.dispatch(request);
    }
    if (failed || this.parser.bufferedBytes > this.front.maxItemBytes + 64 * 1024) {
      // A connection memcached would end too (a line that never ends, binary after text).
      this.end();
      return;
    }
    if (this.replies.length >= this.front.options.maxPipeline && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private dispatch(request: MemcachedRequest): void {
    switch (request.kind) {
      case 'binary':
        this.answer(binaryRefusal(request.opcode, request.opaque));
        this.end();
        return;
      case 'refused':
        this.reply(line(request.reply), request.noreply === true);
        if (request.reply === 'CLIENT_ERROR line too long') this.end();
        return;
      case 'oversize': {
        // memcached answers, reads the data away and, for a set, drops the old value so it
        // does not outlive the failed set: that delete is replicated.
        const drop = oversizeDrop(request);
        if (drop !== undefined) this.write(drop.request, drop.shape, true);
        this.reply(line('SERVER_ERROR object too large for cache'), request.noreply);
        return;
      }
      case 'metaset': {
        const { tokens, quiet } = metaArguments(request.tokens);
        this.write(quietly(Buffer.concat([joinLine(tokens), request.block]), quiet), quiet ? 'quiet' : 'meta');
        return;
      }
      case 'storage': {
        const head = [request.name, request.key, request.flags, absoluteExptime(request.exptime, nowSeconds()), String(request.bytes)];
        if (request.cas !== undefined) head.push(request.cas);
        this.write(Buffer.concat([joinLine(head.map(toBuffer)), request.block]), 'line', request.noreply);
        return;
      }
      case 'line':
        this.dispatchLine(request.name, request.tokens, request.noreply);
    }
  }

  // --- at a follower: the connection handed to the leader -------------------------------

  private needsLeader(request: MemcachedRequest): boolean {
    if (this.front.log.replica.isLeader || this.forwarded) return false;
    switch (request.kind) {
      case 'storage':
      case 'metaset':
      case 'oversize':
        return true;
      case 'line': {
        const name = request.name;
        if (name === 'get' || name === 'gets') return this.front.options.readMode !== 'any';
        if (name === 'mg') return metaArguments(request.tokens).writes || this.front.options.readMode !== 'any';
        return writeLines.has(name) || name === 'md' || name === 'ma';
      }
      default:
        return false;
    }
  }

  // Opens the link to the leader (followerRequests "forward"); false when it cannot (no
  // leader known, forwarding off), and the request is then refused here.
  private handOver(): boolean {
    const front = this.front;
    if (front.options.followerRequests !== 'forward') return false;
    const leaderId = front.log.replica.role.leaderId;
    if (leaderId === null || leaderId === front.log.replica.nodeId) return false;
    const address = front.leaderAddress(leaderId);
    if (address === undefined) return false;
    const slot = this.reserve();
    const link = new MemcachedLeaderLink({
      host: address.host,
      port: address.port,
      greeting: joinLine(['mu_forwarded', ...front.peerAuth.arguments('forwarded', 'memcached')].map((word) => Buffer.from(word))),
      maxHeldBytes: front.options.maxOutputBytes,
      deliver: (bytes) => this.deliver(bytes),
      ended: () => this.close(),
    });
    // The link is to one leader: when another takes over, the client is let go and
    // reconnects.
    const onRoleChange = () => {
      if (front.log.replica.role.leaderId !== leaderId) this.close();
    };
    this.upstream = { link, onRoleChange };
    front.roleListeners.add(onRoleChange);
    front.counters.forwardedClients++;
    this.replies.hold(slot, link);
    return true;
  }

  private forwardUp(request: MemcachedRequest): void {
    const upstream = this.upstream as { link: MemcachedLeaderLink };
    const bytes = this.encodeForLeader(request);
    const last = request.kind === 'binary' || (request.kind === 'refused' && request.line === undefined);
    if (last) {
      // The leader answers it and ends the link after the replies before it; this client's
      // connection then ends (the link's `ended`). Nothing after it is read.
      upstream.link.forward(bytes);
      this.end();
      return;
    }
    if (upstream.link.forward(bytes) || this.paused) return;
    this.paused = true;
    this.socket.pause();
    upstream.link.whenDrained(() => {
      this.paused = false;
      if (!this.closed) this.socket.resume();
    });
  }

  // The request as the leader's front end will read it (the same parser there gives the
  // same answer). An oversize value's data was not kept: one byte over the limit in zeros
  // gets the same refusal (and the same dropped value). A line too long and a binary request
  // are sent so that the leader refuses them too, and ends the connection.
  private encodeForLeader(request: MemcachedRequest): Buffer {
    switch (request.kind) {
      case 'storage': {
        const head = [request.name, request.key, request.flags, request.exptime, String(request.bytes)];
        if (request.cas !== undefined) head.push(request.cas);
        if (request.noreply) head.push('noreply');
        return Buffer.concat([joinLine(head.map(toBuffer)), request.block]);
      }
      case 'metaset':
        return Buffer.concat([joinLine(request.tokens), request.block]);
      case 'line':
        return joinLine(request.tokens);
      case 'refused':
        return request.line === undefined ? Buffer.alloc(maxLineBytes + 1, 0x20) : Buffer.concat([request.line, crlf]);
      case 'oversize': {
        const bytes = String(this.front.maxItemBytes + 1);
        const head =
          request.tokens !== undefined
            ? [request.tokens[0] as Buffer, request.key, bytes, ...request.tokens.slice(3)]
            : [request.name, request.key, '0', '0', bytes, ...(request.name === 'cas' ? ['0'] : []), ...(request.noreply ? ['noreply'] : [])];
        return Buffer.concat([joinLine(head.map(toBuffer)), Buffer.alloc(Number(bytes)), crlf]);
      }
      case 'binary': {
        const header = Buffer.alloc(24);
        header[0] = 0x80;
        header[1] = request.opcode;
        request.opaque.copy(header, 12);
        return header;
      }
    }
  }

  // Bytes through the link, written as they come (its slot is at the head).
  private deliver(bytes: Buffer): void {
    if (this.closed) return;
    this.socket.write(bytes);
    this.front.counters.replyBytes += bytes.length;
    if (this.socket.writableLength > this.front.options.maxOutputBytes) {
      this.front.counters.outputLimitCloses++;
      this.close();
    }
  }

  // mu_forwarded <origin> <user> <time> <token>: another replica hands a client over.
  private acceptHandOver(tokens: Buffer[]): void {
    const verified = this.front.peerAuth.verify('forwarded', tokens.slice(1));
    if (typeof verified === 'string') {
      this.answer(line(`CLIENT_ERROR mu-proxy: refused mu_forwarded (${verified})`));
      return;
    }
    this.forwarded = true;
    this.answer(line('OK'));
  }

  private dispatchLine(name: string, tokens: Buffer[], noreply: boolean): void {
    if (name === 'mg' || name === 'md' || name === 'ma' || name === 'me') {
      this.dispatchMeta(name, tokens);
      return;
    }
    const args = noreply ? tokens.slice(0, -1) : tokens;
    if (name === 'get' || name === 'gets') {
      this.read(joinLine(args), 'values', this.front.options.readMode);
      return;
    }
    if (writeLines.has(name)) {
      const at = exptimeIndex(name);
      const rewritten = args.map((token, i) => (i === at ? Buffer.from(absoluteExptime(token.toString('latin1'), nowSeconds())) : token));
      this.write(joinLine(rewritten), name === 'gat' || name === 'gats' ? 'values' : 'line', noreply);
      return;
    }
    if (localLines.has(name)) {
      this.read(joinLine(args), 'line', 'local', noreply);
      return;
    }
    switch (name) {
      case 'stats': {
        // Most of stats' forms answer STAT lines up to END; these answer otherwise. The two
        // listings print keys as stored, which a key set in base64 (ms ... b) can end early:
        // they are refused, the backend connection could not frame them safely.
        const form = args[1]?.toString('latin1');
        if (form === 'cachedump' || (form === 'detail' && args[2]?.toString('latin1') === 'dump')) {
          this.answer(line(`CLIENT_ERROR mu-proxy: 'stats ${form}' is not allowed through the proxy: it lists one replica's memcached's keys as stored`));
          return;
        }
        const shape = form === 'reset' || form === 'detail' ? 'line' : 'stats';
        this.read(joinLine(args), shape, 'local', false, args.length === 1 ? (raw) => this.front.withProxyStats(raw) : undefined);
        return;
      }
      case 'mn':
        this.answer(line('MN'));
        return;
      case 'mu_check': {
        // mu-proxy check's question: a digest entry proposed now (at the leader).
        const slot = this.reserve();
        void this.front.proposeDigest().then((data) => this.fill(slot, data));
        return;
      }
      case 'mu_digest': {
        const index = Number(args[1]?.toString('latin1'));
        this.answer(args.length === 2 && Number.isSafeInteger(index) && index > 0 ? this.front.digestAt(index) : line('CLIENT_ERROR mu-proxy: usage: mu_digest <log index>'));
        return;
      }
      case 'mu_forwarded':
        this.acceptHandOver(tokens);
        return;
      case 'quit':
        this.ending = true;
        this.flushEnd();
        return;
      default:
        if (oneServerOnly.has(name)) this.answer(line(`CLIENT_ERROR mu-proxy: '${name}' is not allowed through the proxy: it would act on one replica's memcached only`));
        else this.answer(line('ERROR'));
    }
  }

  // mg (a write when it touches, T, or creates, N), md, ma: through the log, TTLs made
  // absolute; me (an item's debug line): this replica's own memcached.
  private dispatchMeta(name: string, tokens: Buffer[]): void {
    if (tokens.length < 2) {
      this.answer(line('ERROR'));
      return;
    }
    const { tokens: sent, quiet, writes } = metaArguments(tokens);
    if (name === 'me') {
      this.read(joinLine(sent), 'meta', 'local'); // me has no quiet flag
      return;
    }
    const request = quietly(joinLine(sent), quiet);
    const shape = quiet ? 'quiet' : 'meta';
    if (name === 'mg' && !writes) this.read(request, shape, this.front.options.readMode);
    else this.write(request, shape);
  }

  // --- writes and reads ------------------------------------------------------------------

  // `noreply`: the client sees no reply (memcached's quiet meta requests are handled by
  // memcached itself, see quietly).
  private write(request: Buffer, shape: ReplyShape, noreply = false): void {
    if (this.refuseLongLine(request)) return;
    const slot = this.reserve();
    const refusal = this.front.writeRefusal();
    if (refusal !== undefined) {
      this.fill(slot, noreply ? Buffer.alloc(0) : refusal);
      return;
    }
    this.front.counters.writes++;
    const requestId = this.front.log.pipeline.newRequestId();
    this.lastWriteRequestId = requestId;
    void this.front.proposeWrite(requestId, request, shape).then((data) => this.fill(slot, noreply ? Buffer.alloc(0) : withoutMn(data, shape)));
  }

  // mode 'linearizable': at the leader, after a barrier entry proposed now is applied;
  // 'leader' / 'any': at once (the leader only for 'leader'); 'local': this replica's
  // memcached about itself. Always after the connection's previous write is applied here.
  private read(
    request: Buffer,
    shape: ReplyShape,
    mode: 'linearizable' | 'leader' | 'any' | 'local',
    noreply = false,
    transform?: (raw: Buffer) => Buffer,
  ): void {
    if (this.refuseLongLine(request)) return;
    const slot = this.reserve();
    if ((mode === 'linearizable' || mode === 'leader') && !this.front.log.replica.isLeader) {
      this.fill(slot, this.front.notLeaderReply());
      return;
    }
    this.front.counters.reads++;
    const send = (applied: boolean, refusal?: unknown) => {
      if (!applied && refusal !== undefined) {
        this.fill(slot, this.front.proposalErrorReply(refusal));
        return;
      }
      this.front.backend.send(request, shape).then(
        (raw) => this.fill(slot, noreply ? Buffer.alloc(0) : transform === undefined ? withoutMn(raw, shape) : transform(raw)),
        (error: Error) => this.fill(slot, line(`SERVER_ERROR mu-proxy: the local memcached failed: ${error.message}`)),
      );
    };
    if (mode === 'linearizable') {
      const barrier = this.front.log.barrier();
      this.front.log.pipeline.afterApplied(barrier.requestId, (applied) => send(applied, applied ? undefined : barrier.refusal()));
    } else if (this.lastWriteRequestId !== undefined) {
      this.front.log.pipeline.afterApplied(this.lastWriteRequestId, () => send(true));
    } else {
      send(true);
    }
  }

  // True (the client told, its connection ending) when the request's line is longer than
  // memcached takes in pieces.
  private refuseLongLine(request: Buffer): boolean {
    const lineEnd = request.indexOf(0x0a);
    const bytes = lineEnd < 0 ? request.length : lineEnd; // its CR included
    if (bytes <= maxBackendLineBytes || request.subarray(0, 4).equals(getPrefix) || request.subarray(0, 5).equals(getsPrefix)) return false;
    this.answer(line('CLIENT_ERROR line too long'));
    this.end();
    return true;
  }

  // --- replies, in request order --------------------------------------------------------

  private reserve(): ReplySlot {
    return this.replies.reserve();
  }

  private answer(data: Buffer): void {
    this.fill(this.reserve(), data);
  }

  private reply(data: Buffer, noreply: boolean): void {
    this.answer(noreply ? Buffer.alloc(0) : data);
  }

  private fill(slot: ReplySlot, data: Buffer): void {
    if (this.closed) return;
    const written = this.replies.fill(slot, data, (ready) => {
      this.socket.cork();
      for (const reply of ready) if (reply.length > 0) this.socket.write(reply);
      process.nextTick(() => this.socket.uncork());
      this.front.counters.replyBytes += ready.reduce((sum, reply) => sum + reply.length, 0);
    });
    if (!written) return;
    if (this.ending) {
      this.flushEnd();
      return;
    }
    if (this.socket.writableLength > this.front.options.maxOutputBytes) {
      this.front.counters.outputLimitCloses++;
      this.close();
      return;
    }
    this.resumeIfRoom();
  }

  private resumeIfRoom(): void {
    if (this.ending || !this.paused) return;
    if (this.replies.length < this.front.options.maxPipeline / 2 && this.socket.writableLength < this.front.options.maxOutputBytes / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  // The connection ends once every earlier reply is out.
  private end(): void {
    this.ending = true;
    this.socket.pause();
    this.flushEnd();
  }

  private flushEnd(): void {
    if (this.replies.length === 0 && !this.closed) this.socket.end();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.upstream !== undefined) {
      this.upstream.link.close();
      this.front.roleListeners.delete(this.upstream.onRoleChange);
    }
    this.socket.destroy();
    this.front.sessionClosed(this);
  }
}

const getPrefix = Buffer.from('get ');
const getsPrefix = Buffer.from('gets ');

// A quiet meta request as memcached gets it: followed by mn.
function quietly(request: Buffer, quiet: boolean): Buffer {
  return quiet ? Buffer.concat([request, mnRequest]) : request;
}

// A 'quiet' reply without its MN (a line of the proxy's own, an error, has none).
function withoutMn(reply: Buffer, shape: ReplyShape): Buffer {
  if (shape !== 'quiet' || !reply.subarray(reply.length - mnReply.length).equals(mnReply)) return reply;
  const rest = reply.length - mnReply.length;
  return rest === 0 || reply[rest - 1] === 0x0a ? reply.subarray(0, rest) : reply;
}

// What an oversize request drops through the log, as memcached drops it: a set's key; an
// ms's in any valid mode (memcached unlinks the key when the item cannot be allocated; an
// invalid mode is refused before), its key decoded from base64 with the b flag.
function oversizeDrop(request: Extract<MemcachedRequest, { kind: 'oversize' }>): { request: Buffer; shape: ReplyShape } | undefined {
  if (request.name === 'set') return { request: joinLine([Buffer.from('delete'), request.key]), shape: 'line' };
  if (request.tokens === undefined) return undefined;
  const flags = request.tokens.slice(3);
  const mode = flags.find((flag) => flag[0] === 0x4d /* M */);
  if (mode !== undefined && (mode.length !== 2 || !'EAPRS'.includes(String.fromCharCode(mode[1] as number)))) return undefined;
  const base64 = flags.some((flag) => flag[0] === 0x62 /* b */);
  return { request: joinLine([Buffer.from('md'), request.key, ...(base64 ? [Buffer.from('b')] : [])]), shape: 'meta' };
}

// A meta command's tokens as sent to memcached: T (TTL) and N (vivify with a TTL) made
// absolute; `quiet`: the q flag is there (kept: see quietly). `writes`: a T or N flag was
// there (mg then changes the item).
function metaArguments(tokens: Buffer[]): { tokens: Buffer[]; quiet: boolean; writes: boolean } {
  let quiet = false;
  let writes = false;
  const sent: Buffer[] = [];
  const flagsFrom = tokens[0]?.toString('latin1') === 'ms' ? 3 : 2;
  tokens.forEach((token, i) => {
    if (i < flagsFrom) {
      sent.push(token);
      return;
    }
    // memcached reads a flag by its first byte: "qx" is the quiet flag too.
    if (token[0] === 0x71 /* q */) quiet = true;
    const flag = token[0];
    if (flag === 0x54 /* T */ || flag === 0x4e /* N */) {
      writes = true;
      sent.push(Buffer.concat([token.subarray(0, 1), Buffer.from(absoluteExptime(token.toString('latin1', 1), nowSeconds()))]));
      return;
    }
    sent.push(token);
  });
  return { tokens: sent, quiet, writes };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function toBuffer(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
}

// A request line: the tokens with single spaces, CRLF-ended (what memcached reads the same
// whatever spacing the client used).
function joinLine(tokens: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  tokens.forEach((token, i) => {
    if (i > 0) parts.push(Buffer.from(' '));
    parts.push(token);
  });
  parts.push(crlf);
  return Buffer.concat(parts);
}

// The binary protocol's answer to a request it will not serve: status 0x0083 (not
// supported) with a text body saying why, then the connection ends.
function binaryRefusal(opcode: number, opaque: Buffer): Buffer {
  const body = Buffer.from('mu-proxy speaks the memcached text protocol (meta commands included); the binary protocol is not supported');
  const header = Buffer.alloc(24);
  header[0] = 0x81;
  header[1] = opcode;
  header.writeUInt16BE(0x0083, 6);
  header.writeUInt32BE(body.length, 8);
  opaque.copy(header, 12);
  return Buffer.concat([header, body]);
}
