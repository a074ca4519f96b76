// One client connection of the Redis front end. It parses requests (request_parser.ts),
// decides for each what it is (the command table), and answers in request order, each
// reply coming from wherever its request went:
//   writes        -> proposed through Mu (relative expirations made absolute first); the
//                    reply is this replica's backend's answer to the applied command
//   reads         -> this replica's backend, after the connection's earlier writes are
//                    answered and, in linearizable mode, after a barrier entry proves this
//                    replica still leads
//   transactions  -> queued here; EXEC proposes one log entry (MULTI ... EXEC applied whole)
//   connection    -> answered here (PING, ECHO, SELECT, AUTH, HELLO, QUIT, RESET, CLIENT ...)
// Nothing a client sends can make the proxy drop another client: bad input gets an error
// reply (a protocol error closes only this connection, as Redis does), and the limits on
// request size, pipeline depth, output buffer and idle time bound what one client costs.
import type net from 'node:net';

import { encodeCommand } from '../../adapters/redis/resp.js';
import { arityOk } from './command_table.js';
import { rewriteRelativeExpiry } from './determinism.js';
import { handlesEffects } from './effects.js';
import { RequestParser } from './request_parser.js';
import { encodeLogCommand, LogCommandKind, maxParts } from './log_command.js';
import * as reply from './replies.js';
import type { FrontEnd } from './front_end.js';
import type { AclUser } from './acl.js';
import type { KeyWatcher } from './key_watch.js';
import { latencyTrace } from './latency_trace.js';
import { OrderedReplies, type ReplySlot } from './ordered_replies.js';
import { LeaderLink } from './leader_link.js';
import { streamSnapshot } from './state_transfer.js';
import { SubscriberRelay } from './subscriber_relay.js';
import type { CommandClass } from './command_table.js';

// One WATCH state: its keys are registered with the front end's KeyWatchRegistry (once the
// connection's earlier writes are applied: its own writes before WATCH do not count), and
// `written` turns true when one of them is written after that. It stays registered until
// the EXEC that checks it is decided.
interface Watching {
  written: boolean;
  readonly watcher: KeyWatcher;
}

// Script and function commands that change data: replicated (scripts must be
// deterministic: the documented rule). EVAL_RO too: it loads its script into the
// backend's script cache, and a later EVALSHA of it runs on every replica. The rest of
// the class are reads.
const scriptWrites = new Set(['eval', 'evalsha', 'fcall', 'eval_ro', 'script|load', 'script|flush', 'function|load', 'function|delete', 'function|flush', 'function|restore']);

// What a subscribed connection may send (Redis 7.0), the rest is refused there; all but
// QUIT and RESET go to the subscription's own backend connection.
const subscribedCommands = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe', 'ping']);

// The blocking pops: tried in log order as a transaction of the command itself (inside
// MULTI Redis runs them without blocking: the same pop on every replica, with Redis' own
// replies and errors), and tried again when one of their keys is written.
const blockingPops = new Set(['blpop', 'brpop', 'brpoplpush', 'blmove', 'blmpop', 'bzpopmin', 'bzpopmax', 'bzmpop']);

// Script and function calls: what they run is not checked against the user (see
// permissionDenial).
const scriptRuns = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);
const scriptDenial = reply.errorReply('NOPERM mu-proxy: scripts and functions run their commands unchecked; only a user with every permission on every key may run them');

// How long a snapshot's recipient may leave the donor's socket full (state_transfer.ts:
// as long as the recipient waits for a silent donor).
const snapshotStallMs = 10_000;

export class RedisSession {
  private readonly parser: RequestParser;
  private readonly replies = new OrderedReplies();
  private db = 0;
  // The user this connection acts as (acl.ts); undefined until it authenticates.
  private user: AclUser | undefined;
  // A connection from another replica's proxy (MU PEER): may fetch a snapshot.
  private peer = false;
  private transaction: { parts: Buffer[]; failed: boolean } | undefined;
  // WATCH: the keys are registered with the front end's KeyWatchRegistry (once this
  // connection's earlier writes are applied: its own writes before WATCH do not count);
  // `written` turns true when one of them is written after that.
  private watching: Watching | undefined;
  // Requests that arrived while a nondeterministic write of this connection runs.
  private deferred: Buffer[][] | undefined;
  // This connection's latest write: a later read goes to the backend right after it.
  private lastWriteRequestId: number | undefined;
  private closed = false;
  private ending = false; // a protocol error: the error reply goes out, then the socket ends
  private paused = false;
  private name: Buffer | undefined;
  // Wakes this connection's blocking pop, if one waits (to see the connection closed).
  private wakeBlocked: (() => void) | undefined;
  // This connection was handed over by a follower (MU FORWARDED): it is never forwarded
  // again, so a stale view of the leadership cannot make a loop.
  private forwarded = false;
  // Set once this connection is relayed to the leader (leader_link.ts).
  private upstream: { link: LeaderLink; leaderId: number; onRoleChange: () => void } | undefined;
  // Set while the connection is subscribed (SUBSCRIBE and kin): see subscriber_relay.ts.
  private subscription: { relay: SubscriberRelay; slot: ReplySlot; onRoleChange: () => void } | undefined;
  readonly id: number;

  constructor(
    private readonly socket: net.Socket,
    private readonly front: FrontEnd,
  ) {
    this.id = front.nextClientId();
    this.user = front.access.initialUser;
    this.parser = new RequestParser(front.options.maxRequestBytes);
    socket.setNoDelay(true);
    if (front.options.idleTimeoutMs > 0) {
      socket.setTimeout(front.options.idleTimeoutMs, () => this.close());
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('drain', () => this.resumeIfRoom());
  }

  private onData(chunk: Buffer): void {
    if (this.ending || this.closed) return;
    latencyTrace?.arrived();
    const requests = this.parser.push(chunk);
    for (const argv of requests) {
      if (this.closed || this.ending) return;
      this.front.counters.requests++;
      if (this.deferred !== undefined) this.deferred.push(argv);
      else this.dispatch(argv);
    }
    // Answered after the requests before it, as Redis does; then the connection ends.
    if (this.parser.error !== undefined) {
      this.protocolError(this.parser.error.message);
      return;
    }
    if (this.parser.bufferedBytes > this.front.options.maxRequestBytes) {
      this.protocolError(`request larger than ${this.front.options.maxRequestBytes} bytes`);
      return;
    }
    if (this.waitingRequests >= this.front.options.maxPipeline && !this.paused) {
      // Backpressure: read no more until the replies drain.
      this.paused = true;
      this.socket.pause();
    }
  }

  // Requests read but not answered: those with a reply slot, and those held back behind a
  // blocking pop, a nondeterministic write or a snapshot (which may wait for ever).
  private get waitingRequests(): number {
    return this.replies.length + (this.deferred?.length ?? 0);
  }

  private dispatch(argv: Buffer[]): void {
    const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
    if (this.user === undefined && name !== 'auth' && name !== 'hello' && name !== 'quit' && !isPeerGreeting(name, argv)) {
      this.answer(reply.errorReply('NOAUTH Authentication required.'));
      return;
    }
    if (this.upstream !== undefined) {
      this.forwardUp(argv, this.upstream.link);
      return;
    }
    if (this.subscription !== undefined) {
      this.dispatchSubscribed(argv, name, this.subscription);
      return;
    }
    if (this.transaction !== undefined && !['exec', 'discard', 'multi', 'watch', 'quit', 'reset'].includes(name)) {
      this.queueInTransaction(argv);
      return;
    }
    const denial = this.permissionDenial(name, argv);
    if (denial !== undefined) {
      this.answer(denial);
      return;
    }
    if (this.handleConnectionCommand(name, argv)) return;
    const found = this.front.table.lookup(argv);
    // Unknown, or the wrong number of arguments: the backend answers with Redis' own error
    // text, and nothing is executed, so asking it directly is safe.
    if (found === undefined || !arityOk(found.info, argv.length)) {
      this.read(argv, 'local');
      return;
    }
    if (this.needsLeader(found.class, found.info.name) && this.forwardToLeader(argv)) return;
    switch (found.class) {
      case 'read':
        this.read(argv, this.front.options.readMode);
        return;
      case 'admin-local':
        // About this replica's own server (INFO, MEMORY, OBJECT ...): answered here, on
        // any replica. INFO gains a "mu" section.
        this.read(argv, 'local', name === 'info' ? (raw) => this.front.withMuInfo(argv, raw) : undefined);
        return;
      case 'write':
        this.write([encodeCommand(argv)]);
        return;
      case 'write-rewrite':
        this.write([encodeCommand(rewriteRelativeExpiry(argv, Date.now()))]);
        return;
      case 'script':
        if (scriptWrites.has(found.info.name)) this.write([encodeCommand(argv)]);
        else this.read(argv, this.front.options.readMode);
        return;
      case 'transaction':
        this.handleTransaction(name, argv);
        return;
      case 'connection':
        this.read(argv, 'local'); // COMMAND and the like: the backend's own answer
        return;
      case 'write-effects':
        if (!handlesEffects(argv)) {
          this.answer(
            reply.errorReply(`ERR '${name}' in this form is not supported by mu-proxy yet: its effect is not deterministic`),
          );
          return;
        }
        this.writeWithEffects(argv);
        return;
      case 'blocking':
        if (name === 'wait') this.waitForReplicas(argv);
        else if (blockingPops.has(name)) this.blockingPop(argv);
        else if (name === 'xread' || name === 'xreadgroup') this.blockingStreamRead(argv);
        else this.answer(reply.errorReply(`ERR blocking command '${name}' is not supported by mu-proxy yet`));
        return;
      case 'pubsub':
        this.pubsub(argv, name);
        return;
      case 'rejected':
        this.answer(
          reply.errorReply(`ERR '${found.info.name.replace('|', ' ')}' is not allowed through mu-proxy: it would act on one replica's server only`),
        );
        return;
    }
  }

  // --- connection commands: answered here ---------------------------------------------

  private handleConnectionCommand(name: string, argv: Buffer[]): boolean {
    switch (name) {
      case 'ping':
        if (argv.length > 2) this.answer(wrongArity('ping'));
        else this.answer(argv.length === 2 ? reply.bulk(argv[1] as Buffer) : reply.pong);
        return true;
      case 'echo':
        this.answer(argv.length === 2 ? reply.bulk(argv[1] as Buffer) : wrongArity('echo'));
        return true;
      case 'quit':
        this.ending = true;
        this.answer(reply.ok);
        return true;
      case 'select':
        this.answer(argv.length === 2 ? this.select(argv[1] as Buffer) : wrongArity('select'));
        return true;
      case 'auth':
        this.answer(this.auth(argv));
        return true;
      case 'hello':
        this.answer(this.hello(argv));
        return true;
      case 'reset':
        this.db = 0;
        this.transaction = undefined;
        this.unwatch();
        this.name = undefined;
        this.user = this.front.access.initialUser;
        this.answer(reply.simpleString('RESET'));
        return true;
      case 'client':
        return this.client(argv);
      case 'acl':
        return this.acl(argv);
      case 'mu': {
        const answer = this.mu(argv);
        if (answer !== undefined) this.answer(answer);
        return true;
      }
      default:
        return false;
    }
  }

  private select(index: Buffer): Buffer {
    const text = index.toString('latin1');
    if (!isRedisInteger(text)) {
      return reply.errorReply('ERR value is not an integer or out of range');
    }
    const db = Number(text);
    if (db < 0 || db >= this.front.databases) return reply.errorReply('ERR DB index is out of range');
    this.db = db;
    return reply.ok;
  }

  private auth(argv: Buffer[]): Buffer {
    if (argv.length < 2 || argv.length > 3) return wrongArity('auth');
    const access = this.front.access;
    if (argv.length === 2 && !access.defaultNeedsPassword) {
      return reply.errorReply(
        'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
      );
    }
    const name = argv.length === 3 ? (argv[1] as Buffer).toString() : 'default';
    const user = access.authenticate(name, argv[argv.length - 1] as Buffer);
    if (user === undefined) {
      this.front.counters.authFailures++;
      return reply.errorReply('WRONGPASS invalid username-password pair or user is disabled.');
    }
    this.user = user;
    return reply.ok;
  }

  // Why this connection's user may not run `argv` (Redis' NOPERM errors), or undefined.
  // Checked after the arity, as Redis does: the command, then its keys.
  private permissionDenial(name: string, argv: Buffer[]): Buffer | undefined {
    const user = this.user;
    if (user === undefined || user.unrestricted || this.peer) return undefined;
    if (name === 'auth' || name === 'hello' || name === 'quit' || name === 'reset') return undefined;
    if (name === 'mu') {
      const sub = (argv[1] as Buffer | undefined)?.toString('latin1').toLowerCase();
      return sub === 'status' || sub === 'forwarded' || sub === 'peer' || sub === 'watchlost' ? undefined : reply.errorReply("NOPERM this user has no permissions to run the 'mu' command");
    }
    const found = this.front.table.lookup(argv);
    if (found === undefined || !arityOk(found.info, argv.length)) return undefined; // the usual error follows
    if (!user.canRun(found.info)) return reply.errorReply(`NOPERM this user has no permissions to run the '${found.info.name}' command`);
    if (!user.canAccessKeys(this.front.table.keyAccesses(argv))) return reply.errorReply('NOPERM this user has no permissions to access one of the keys used as arguments');
    const channels = channelArguments(found.info.name, argv);
    if (channels !== undefined && !user.canAccessChannels(channels, found.info.name === 'psubscribe')) {
      return reply.errorReply('NOPERM this user has no permissions to access one of the channels used as arguments');
    }
    // Redis checks each command a script calls against the caller's user; the backends run
    // them with no user at all, so a script could reach any key and any command.
    if (scriptRuns.has(found.info.name)) return scriptDenial;
    // SORT's BY and GET patterns name keys that are not arguments: Redis refuses them to a
    // user without access to every key, at run time (the backends would not).
    if ((found.info.name === 'sort' || found.info.name === 'sort_ro') && !user.readsAnyKey) return sortPatternDenial(argv, found.info.name === 'sort_ro');
    return undefined;
  }

  // RESP3 is not spoken: HELLO 3 gets NOPROTO, which makes clients fall back to RESP2.
  private hello(argv: Buffer[]): Buffer {
    if (argv.length >= 2) {
      const version = (argv[1] as Buffer).toString('latin1');
      if (version !== '2') return reply.errorReply('NOPROTO unsupported protocol version');
    }
    for (let i = 2; i < argv.length; i++) {
      const given = (argv[i] as Buffer).toString('latin1');
      const option = given.toLowerCase();
      if (option === 'auth' && i + 2 < argv.length) {
        const answer = this.auth([Buffer.from('auth'), argv[i + 1] as Buffer, argv[i + 2] as Buffer]);
        if (answer !== reply.ok) return answer;
        i += 2;
      } else if (option === 'setname' && i + 1 < argv.length) {
        this.name = argv[i + 1];
        i += 1;
      } else {
        return reply.errorReply(`ERR Syntax error in HELLO option '${given}'`);
      }
    }
    if (this.user === undefined) return reply.errorReply('NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time');
    return reply.array([
      reply.bulk('server'), reply.bulk('redis'),
      reply.bulk('version'), reply.bulk(this.front.backendVersion),
      reply.bulk('proto'), reply.integer(2),
      reply.bulk('id'), reply.integer(this.id),
      reply.bulk('mode'), reply.bulk('standalone'),
      reply.bulk('role'), reply.bulk(this.front.replica.isLeader ? 'master' : 'replica'),
      reply.bulk('modules'), reply.array([]),
    ]);
  }

  // MU STATUS: this replica's view of the cluster, as one JSON bulk string. MU CHECK (at
  // the leader): proposes a digest entry and answers `*2 :index <digest>` once applied
  // here. MU DIGEST <index>: this replica's digest at that entry, nil when not applied yet.
  private mu(argv: Buffer[]): Buffer | undefined {
    const sub = argv.length >= 2 ? (argv[1] as Buffer).toString('latin1').toLowerCase() : '';
    if (sub === 'forwarded' || sub === 'peer') {
      // Another replica's proxy: handing a client over (leader_link.ts), acting as that
      // client's user; or fetching a snapshot (resync.ts). Proven with the cluster secret.
      const verified = this.front.peerAuth.verify(sub, argv.slice(2));
      const user = typeof verified === 'string' ? undefined : this.front.access.user(verified.user);
      if (typeof verified === 'string' || user === undefined) {
        this.front.counters.authFailures++;
        return reply.errorReply(`NOAUTH mu-proxy: refused MU ${sub.toUpperCase()} (${typeof verified === 'string' ? verified : `no user '${verified.user}'`})`);
      }
      this.user = user;
      if (sub === 'forwarded') this.forwarded = true;
      else this.peer = true;
      return reply.ok;
    }
    if (sub === 'watchlost' && argv.length === 2 && this.forwarded) {
      // Set up by a follower handing over a client that WATCHed keys there while that
      // replica led: the writes since are not known here, so the client's next EXEC aborts,
      // as if a watched key had been written (an abort Redis might not make, never a missed one).
      this.watching = { written: true, watcher: { touched: () => {} } };
      return reply.ok;
    }
    if (sub === 'check' && argv.length === 2) {
      const slot = this.reserve();
      void this.proposeForReply(LogCommandKind.digest, []).then((data) => this.fill(slot, data));
      return undefined;
    }
    if (sub === 'snapshot' && argv.length === 2) {
      if (!this.peer && this.user?.unrestricted !== true) return reply.errorReply("NOPERM this user has no permissions to run the 'mu' command");
      this.serveSnapshot();
      return undefined;
    }
    if (sub === 'digest' && argv.length === 3) {
      const index = Number((argv[2] as Buffer).toString('latin1'));
      if (!Number.isSafeInteger(index) || index <= 0) return reply.errorReply('ERR MU DIGEST needs a log index');
      const digest = this.front.pipeline.digestAt(index);
      if (digest === 'pending') return reply.nilBulk;
      return digest ?? reply.errorReply(`ERR mu-proxy: no digest kept for index ${index} (not a digest entry, or too old)`);
    }
    if (sub !== 'status' || argv.length !== 2) return reply.errorReply("ERR unknown MU subcommand (try 'MU STATUS', 'MU CHECK' or 'MU DIGEST <index>')");
    return reply.bulk(JSON.stringify(this.front.statusReport()));
  }

  // ACL WHOAMI and ACL USERS are about the proxy's users (acl.ts); ACL CAT and GENPASS
  // are the backend's own answers; the rest would describe the backend's users, not these.
  private acl(argv: Buffer[]): boolean {
    const sub = argv.length >= 2 ? (argv[1] as Buffer).toString('latin1').toLowerCase() : '';
    if (sub === 'whoami' && argv.length === 2) {
      this.answer(reply.bulk((this.user as AclUser).name));
      return true;
    }
    if (sub === 'users' && argv.length === 2) {
      this.answer(reply.array(this.front.access.names.map((name) => reply.bulk(name))));
      return true;
    }
    if (['list', 'getuser', 'log', 'dryrun'].includes(sub)) {
      this.answer(reply.errorReply(`ERR 'acl ${sub}' is not supported by mu-proxy: its users are in the cluster configuration (redis.users)`));
      return true;
    }
    return false;
  }

  private client(argv: Buffer[]): boolean {
    const sub = argv.length >= 2 ? (argv[1] as Buffer).toString('latin1').toLowerCase() : '';
    switch (sub) {
      case '':
        this.answer(wrongArity('client'));
        return true;
      case 'setname': {
        const name = argv[2];
        if (argv.length !== 3 || name === undefined) this.answer(wrongArity('client|setname'));
        else if (name.some((byte) => byte < 0x21 || byte > 0x7e)) {
          this.answer(reply.errorReply('ERR Client names cannot contain spaces, newlines or special characters.'));
        } else {
          this.name = name.length === 0 ? undefined : name;
          this.answer(reply.ok);
        }
        return true;
      }
      case 'getname':
        this.answer(this.name === undefined ? reply.nilBulk : reply.bulk(this.name));
        return true;
      case 'id':
        this.answer(reply.integer(this.id));
        return true;
      case 'setinfo':
        this.answer(reply.ok);
        return true;
      default:
        this.answer(reply.errorReply(`ERR 'client ${sub}' is not supported by mu-proxy (it would describe one replica's own connections)`));
        return true;
    }
  }

  // --- transactions ---------------------------------------------------------------------

  private handleTransaction(name: string, argv: Buffer[]): void {
    switch (name) {
      case 'multi':
        if (this.transaction !== undefined) this.answer(reply.errorReply('ERR MULTI calls can not be nested'));
        else {
          this.transaction = { parts: [], failed: false };
          this.answer(reply.ok);
        }
        return;
      case 'exec': {
        const transaction = this.transaction;
        if (transaction === undefined) {
          // As in Redis, the WATCH stays: only an EXEC of a transaction ends it.
          this.answer(reply.errorReply('ERR EXEC without MULTI'));
          return;
        }
        this.transaction = undefined;
        const watching = this.watching;
        this.watching = undefined;
        if (watching !== undefined && transaction.failed) this.front.keyWatches.unwatch(watching.watcher);
        if (transaction.failed) this.answer(reply.errorReply('EXECABORT Transaction discarded because of previous errors.'));
        else if (watching !== undefined) this.execWatched(transaction.parts, watching);
        else if (transaction.parts.length === 0) this.answer(reply.array([]));
        else this.propose(LogCommandKind.transaction, transaction.parts, this.reserve());
        return;
      }
      case 'discard':
        if (this.transaction === undefined) this.answer(reply.errorReply('ERR DISCARD without MULTI'));
        else {
          this.transaction = undefined;
          this.unwatch();
          this.answer(reply.ok);
        }
        return;
      case 'watch':
        if (this.transaction !== undefined) this.answer(reply.errorReply('ERR WATCH inside MULTI is not allowed'));
        else this.watch(argv.slice(1));
        return;
      case 'unwatch':
        this.unwatch();
        this.answer(reply.ok);
        return;
      default:
        this.answer(reply.errorReply(`ERR '${name}' is not supported by mu-proxy`));
    }
  }

  private watch(keys: Buffer[]): void {
    let watching = this.watching;
    if (watching === undefined) {
      const created: Watching = { written: false, watcher: { touched: () => (created.written = true) } };
      watching = created;
      this.watching = created;
    }
    const db = this.db;
    const { watcher } = watching;
    const register = () => {
      if (this.watching?.watcher === watcher && !this.closed) this.front.keyWatches.watch(watcher, db, keys);
    };
    if (this.lastWriteRequestId === undefined) register();
    else this.front.pipeline.afterApplied(this.lastWriteRequestId, register);
    this.answer(reply.ok);
  }

  private unwatch(): void {
    if (this.watching === undefined) return;
    this.front.keyWatches.unwatch(this.watching.watcher);
    this.watching = undefined;
  }

  // Through the front end's write barrier (FrontEnd.execWatched). Like a nondeterministic
  // write, it holds this connection's later requests until it is answered.
  private execWatched(parts: Buffer[], watching: Watching): void {
    const slot = this.reserve();
    const refusal = this.front.writeRefusal();
    if (refusal !== undefined) {
      this.front.keyWatches.unwatch(watching.watcher);
      this.fill(slot, refusal);
      return;
    }
    this.front.counters.writes++;
    this.front.noteWrite();
    const done = this.front.execWatched(parts, this.db, () => watching.written).then((data) => {
      this.front.keyWatches.unwatch(watching.watcher);
      this.fill(slot, data);
    });
    this.deferred = [];
    void done.then(() => this.releaseDeferred());
  }

  private queueInTransaction(argv: Buffer[]): void {
    const transaction = this.transaction as { parts: Buffer[]; failed: boolean };
    const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
    const found = this.front.table.lookup(argv);
    if (found === undefined) {
      transaction.failed = true;
      this.answer(unknownCommand(argv));
      return;
    }
    if (!arityOk(found.info, argv.length)) {
      transaction.failed = true;
      this.answer(wrongArity(found.info.name));
      return;
    }
    const denial = this.permissionDenial(name, argv);
    if (denial !== undefined) {
      transaction.failed = true;
      this.answer(denial);
      return;
    }
    // UNWATCH is queued, as Redis queues it (EXEC has unwatched already; it answers OK).
    if (!['read', 'write', 'write-rewrite', 'admin-local'].includes(found.class) && !scriptWrites.has(found.info.name) && name !== 'unwatch') {
      transaction.failed = true;
      this.answer(reply.errorReply(`ERR '${name}' inside MULTI is not supported by mu-proxy`));
      return;
    }
    // The whole transaction is one log command, whose part count is a u16: encoding more
    // would throw out of the socket handler and take the process down.
    if (transaction.parts.length >= maxParts) {
      transaction.failed = true;
      this.answer(reply.errorReply(`ERR mu-proxy: a transaction holds at most ${maxParts} commands`));
      return;
    }
    const command = found.class === 'write-rewrite' ? rewriteRelativeExpiry(argv, Date.now()) : argv;
    transaction.parts.push(encodeCommand(command));
    this.answer(reply.queued);
  }

  // --- writes and reads -----------------------------------------------------------------

  private write(parts: Buffer[]): void {
    this.propose(LogCommandKind.commands, parts, this.reserve());
  }

  private propose(kind: LogCommandKind, parts: Buffer[], slot: ReplySlot): void {
    void this.proposeForReply(kind, parts).then((data) => this.fill(slot, data));
  }

  // Proposes one log command; resolves with this replica's backend's reply to it once
  // applied, or with the error reply that says why it was not.
  private proposeForReply(kind: LogCommandKind, parts: Buffer[]): Promise<Buffer> {
    const refusal = this.front.writeRefusal();
    if (refusal !== undefined) return Promise.resolve(refusal);
    const pipeline = this.front.pipeline;
    const requestId = pipeline.newRequestId();
    const answered = pipeline.expect(requestId);
    const command = encodeLogCommand({ kind, origin: this.front.replica.nodeId, requestId, db: this.db, parts });
    this.front.counters.writes++;
    this.front.noteWrite();
    this.lastWriteRequestId = requestId;
    latencyTrace?.proposed(requestId);
    return new Promise((resolve) => {
      this.front.submit(requestId, command).catch((error: unknown) => {
        pipeline.forget(requestId);
        resolve(this.front.proposalErrorReply(error));
      });
      answered.then(
        (data) => {
          resolve(data);
          if (latencyTrace !== undefined) void Promise.resolve().then(() => latencyTrace?.mark(requestId, 'answered'));
        },
        (error: Error) => resolve(reply.errorReply(`ERR mu-proxy: the local backend failed: ${error.message}`)),
      );
    });
  }

  // BLPOP and kin (`blockingPops`). Each try is a log entry, so every replica pops the same
  // element; an empty try waits here, at the leader, until one of the keys is written,
  // the timeout passes, or the leadership changes, and then tries again. Like Redis, the
  // connection's later requests wait. Unlike Redis, waiting clients are not served in the
  // order they blocked: the first try to reach the log wins.
  private blockingPop(argv: Buffer[]): void {
    const slot = this.reserve();
    const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
    const timeoutArgument = (name === 'blmpop' || name === 'bzmpop' ? argv[1] : argv[argv.length - 1]) as Buffer;
    // A malformed timeout fails the first try with Redis' own error, so NaN never waits.
    const timeoutMs = Number(timeoutArgument.toString('latin1')) * 1000;
    const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    const attempt = [encodeCommand(argv)];
    let touched = false;
    let wake: (() => void) | undefined;
    let tryRequestId: number | undefined;
    const watcher: KeyWatcher = {
      touched: (by) => {
        if (by !== undefined && by === tryRequestId) return; // its own try
        touched = true;
        wake?.();
      },
    };
    const onRoleChange = () => wake?.();
    this.front.keyWatches.watch(watcher, this.db, this.front.table.keys(argv));
    this.front.roleListeners.add(onRoleChange);
    this.wakeBlocked = onRoleChange;
    const serve = async (): Promise<Buffer> => {
      for (;;) {
        // A client that went away takes nothing more from the list.
        if (this.closed) return reply.nilArray;
        touched = false;
        const answer = this.proposeForReply(LogCommandKind.transaction, [...attempt]);
        tryRequestId = this.lastWriteRequestId;
        const raw = await answer;
        const popped = onlyExecElement(raw);
        if (popped === undefined) return raw; // refused, or the backend failed
        if (!isNil(popped)) return popped;
        while (!touched) {
          const remainingMs = deadline - performance.now();
          if (remainingMs <= 0 || this.closed) return reply.nilArray; // what Redis answers on a timeout
          await new Promise<void>((resolve) => {
            const timer = Number.isFinite(remainingMs) ? setTimeout(resolve, remainingMs) : undefined;
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
          const refusal = this.front.writeRefusal();
          if (refusal !== undefined) return refusal;
        }
      }
    };
    const done = serve().then((data) => {
      this.wakeBlocked = undefined;
      this.front.keyWatches.unwatch(watcher);
      this.front.roleListeners.delete(onRoleChange);
      this.fill(slot, data);
    });
    this.deferred = [];
    void done.then(() => this.releaseDeferred());
  }

  // WAIT numreplicas timeout: answered once this connection's last write is applied here,
  // with the number of other replicas a committed entry is known to be on (a majority
  // holds it: 1 of 3, 2 of 5), without waiting for more. Arguments are checked as Redis
  // checks them.
  private waitForReplicas(argv: Buffer[]): void {
    const slot = this.reserve();
    const numreplicas = (argv[1] as Buffer).toString('latin1');
    const timeout = (argv[2] as Buffer).toString('latin1');
    if (!isRedisInteger(numreplicas) || !isRedisInteger(timeout)) {
      this.fill(slot, reply.errorReply('ERR value is not an integer or out of range'));
      return;
    }
    if (BigInt(timeout) < 0n) {
      this.fill(slot, reply.errorReply('ERR timeout is negative'));
      return;
    }
    const answer = () => this.fill(slot, reply.integer(Math.floor(this.front.replica.status().peerAlive.length / 2)));
    if (this.lastWriteRequestId === undefined) answer();
    else this.front.pipeline.afterApplied(this.lastWriteRequestId, answer);
  }

  // A nondeterministic write: run at the leader, its effect replicated (effects.ts). This
  // connection's later requests wait until it is done, so they keep their order around it.
  private writeWithEffects(argv: Buffer[]): void {
    const slot = this.reserve();
    const refusal = this.front.writeRefusal();
    if (refusal !== undefined) {
      this.fill(slot, refusal);
      return;
    }
    this.front.counters.writes++;
    this.front.noteWrite();
    const done = this.front.runWithEffects(argv, this.db).then(
      (data) => this.fill(slot, data),
      (error: Error) => this.fill(slot, reply.errorReply(`ERR mu-proxy: the local backend failed: ${error.message}`)),
    );
    this.deferred = [];
    void done.then(() => this.releaseDeferred());
  }

  private releaseDeferred(): void {
    const waiting = this.deferred ?? [];
    this.deferred = undefined;
    for (let i = 0; i < waiting.length; i++) {
      if (this.closed || this.ending) return;
      this.dispatch(waiting[i] as Buffer[]);
      const again = this.deferred as Buffer[][] | undefined; // set by dispatch meanwhile
      if (again !== undefined) {
        // Another nondeterministic write: the rest waits for it in turn.
        again.push(...waiting.slice(i + 1));
        return;
      }
    }
    // Reading may have paused for the requests held back; not all of them fill a reply.
    this.resumeIfRoom();
  }

  // mode 'linearizable': at the leader, right after a barrier entry proposed now is
  // applied (it proves this replica led when the read arrived, and orders the read after
  // every write committed before it and before this connection's later writes); 'leader':
  // at the leader, from its backend as it is; 'any': this replica's backend, possibly
  // stale; 'local': this replica's backend without any check (answers that hold on any
  // replica: errors for unknown commands, COMMAND). Whatever the mode, a read is sent to
  // the backend right after this connection's previous write is applied there, before
  // anything later in the log: it sees that write and none of the connection's later ones.
  private read(argv: Buffer[], mode: ReadPlace, transform?: (raw: Buffer) => Buffer): void {
    const slot = this.reserve();
    void this.readForReply([encodeCommand(argv)], mode).then((replies) => {
      if (!Array.isArray(replies)) this.fill(slot, replies);
      else this.fill(slot, transform === undefined ? (replies[0] as Buffer) : transform(replies[0] as Buffer));
    });
  }

  // The backend's replies to `commands` (sent as one group) at the place `mode` says (see
  // read), or the error reply that says why they were not sent.
  private readForReply(commands: Buffer[], mode: ReadPlace): Promise<Buffer[] | Buffer> {
    if ((mode === 'linearizable' || mode === 'leader') && !this.front.replica.isLeader) return Promise.resolve(this.front.readRefusal());
    const lost = mode === 'local' ? undefined : this.front.writeRefusal();
    if (lost !== undefined && this.front.pipeline.backendFailed !== undefined) return Promise.resolve(lost);
    this.front.counters.reads++;
    const db = this.db;
    return new Promise((resolve) => {
      // Called synchronously right after the entry the read must follow is handed to the
      // backend: the channel is FIFO, so the read lands exactly there.
      const send = (applied: boolean, refusal?: unknown) => {
        if (!applied && refusal !== undefined) {
          resolve(this.front.proposalErrorReply(refusal));
          return;
        }
        // The backend stopped following the log before the entry was applied (it failed,
        // or ran a write the log does not hold): it may not be read.
        const lostBackend = applied ? undefined : this.front.writeRefusal();
        if (lostBackend !== undefined && this.front.pipeline.backendFailed !== undefined) {
          resolve(lostBackend);
          return;
        }
        this.front.channel.send(db, commands).then(resolve, (error: Error) =>
          resolve(reply.errorReply(`ERR mu-proxy: the local backend failed: ${error.message}`)),
        );
      };
      if (mode === 'linearizable') {
        const barrier = this.front.barrier();
        this.front.pipeline.afterApplied(barrier.requestId, (applied) => send(applied, applied ? undefined : barrier.refusal()));
      } else if (this.lastWriteRequestId !== undefined) {
        this.front.pipeline.afterApplied(this.lastWriteRequestId, (applied) => send(applied || mode === 'local'));
      } else {
        send(true);
      }
    });
  }

  // XREAD ... BLOCK ms ... STREAMS: read like any read; while nothing is new, wait at this
  // replica until one of the streams is written (the apply stream), the timeout passes
  // (Redis' timeout reply, a null array) or the leadership changes, and read again. `$`
  // stands for each stream's last entry when the request arrived.
  private blockingStreamRead(argv: Buffer[]): void {
    const slot = this.reserve();
    // XREADGROUP's tries are writes (they deliver entries to the consumer): each runs at
    // the leader under the write barrier and is replicated as its effects
    // (stream_group_effects.ts); XREAD's are reads in the read mode.
    const group = (argv[0] as Buffer).toString('latin1').toLowerCase() === 'xreadgroup';
    // Options as Redis reads them: in order, up to STREAMS (a key may be named "block").
    let blockAt = -1;
    for (let i = 1; i < argv.length; i++) {
      const word = (argv[i] as Buffer).toString('latin1').toLowerCase();
      if (word === 'streams') break;
      if (word === 'block') blockAt = i;
      if (word === 'block' || word === 'count') i++;
      if (word === 'group') i += 2;
    }
    const timeoutText = (argv[blockAt + 1] as Buffer | undefined)?.toString('latin1') ?? '';
    if (!isRedisInteger(timeoutText)) {
      this.fill(slot, reply.errorReply('ERR timeout is not an integer or out of range'));
      return;
    }
    if (BigInt(timeoutText) < 0n) {
      this.fill(slot, reply.errorReply('ERR timeout is negative'));
      return;
    }
    const timeoutMs = Number(timeoutText);
    const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    // The same read without BLOCK: Redis checks the rest (its errors come from the backend).
    const attempt = argv.filter((_, i) => i !== blockAt && i !== blockAt + 1);
    let streamsAt = -1;
    for (let i = 1; i < attempt.length; i++) {
      const word = (attempt[i] as Buffer).toString('latin1').toLowerCase();
      if (word === 'streams') {
        streamsAt = i;
        break;
      }
      if (word === 'count') i++;
      if (word === 'group') i += 2;
    }
    const half = streamsAt < 0 ? 0 : Math.floor((attempt.length - streamsAt - 1) / 2);
    const keys = attempt.slice(streamsAt + 1, streamsAt + 1 + half);
    const mode = this.front.options.readMode;
    let touched = false;
    let wake: (() => void) | undefined;
    const watcher: KeyWatcher = {
      touched: () => {
        touched = true;
        wake?.();
      },
    };
    const onRoleChange = () => wake?.();
    this.front.keyWatches.watch(watcher, this.db, keys);
    this.front.roleListeners.add(onRoleChange);
    this.wakeBlocked = onRoleChange;
    const serve = async (): Promise<Buffer> => {
      // `$` (XREAD only): the id of each stream's last entry now (0-0 for a stream with
      // none: anything added is new).
      const dollars: number[] = [];
      for (let n = 0; !group && streamsAt >= 0 && n < half; n++) {
        const id = attempt[streamsAt + 1 + half + n] as Buffer;
        if (id.length === 1 && id[0] === 0x24 /* $ */) dollars.push(streamsAt + 1 + half + n);
      }
      if (dollars.length > 0) {
        const keyOf = (i: number) => attempt[i - half] as Buffer;
        const found = await this.readForReply(dollars.map((i) => encodeCommand([Buffer.from('XREVRANGE'), keyOf(i), Buffer.from('+'), Buffer.from('-'), Buffer.from('COUNT'), Buffer.from('1')])), mode);
        if (!Array.isArray(found)) return found;
        dollars.forEach((i, n) => {
          attempt[i] = lastStreamId(found[n] as Buffer) ?? Buffer.from('0-0');
        });
      }
      for (;;) {
        if (this.closed) return reply.nilArray;
        touched = false;
        let answer: Buffer;
        if (group) {
          const refusal = this.front.writeRefusal();
          if (refusal !== undefined) return refusal;
          answer = await this.front.runWithEffects(attempt, this.db);
        } else {
          const replies = await this.readForReply([encodeCommand(attempt)], mode);
          if (!Array.isArray(replies)) return replies;
          answer = replies[0] as Buffer;
        }
        if (!answer.equals(reply.nilArray)) return answer;
        if (performance.now() >= deadline) return reply.nilArray;
        while (!touched) {
          const remainingMs = deadline - performance.now();
          if (remainingMs <= 0 || this.closed) return reply.nilArray;
          await new Promise<void>((resolve) => {
            const timer = Number.isFinite(remainingMs) ? setTimeout(resolve, remainingMs) : undefined;
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      }
    };
    const done = serve().then((data) => {
      this.wakeBlocked = undefined;
      this.front.keyWatches.unwatch(watcher);
      this.front.roleListeners.delete(onRoleChange);
      this.fill(slot, data);
    });
    this.deferred = [];
    void done.then(() => this.releaseDeferred());
  }

  // --- state transfer: this replica as the donor -----------------------------------------

  // MU SNAPSHOT (state_transfer.ts): every key of this replica's backend, taken right
  // after one entry, streamed on this connection, which serves nothing else meanwhile.
  private serveSnapshot(): void {
    if (this.replies.length > 0) {
      this.answer(reply.errorReply('ERR MU SNAPSHOT must be the only request in flight on its connection'));
      return;
    }
    const pipeline = this.front.pipeline;
    const write = (frame: Buffer): Promise<void> =>
      new Promise((resolve, reject) => {
        if (this.closed) reject(new Error('the recipient went away'));
        else if (this.socket.write(frame)) resolve();
        else {
          // This replica's apply stream is held until the snapshot ends: a recipient that
          // stops reading is let go, as the recipient gives up on a silent donor.
          const stalled = setTimeout(() => this.close(), snapshotStallMs);
          const settle = () => {
            clearTimeout(stalled);
            this.socket.off('drain', settle);
            this.socket.off('close', settle);
            if (this.closed) reject(new Error('the recipient went away'));
            else resolve();
          };
          this.socket.once('drain', settle);
          this.socket.once('close', settle);
        }
      });
    this.deferred = [];
    const serve = async () => {
      const cursor = await pipeline.holdForSnapshot();
      if (cursor === undefined) {
        await write(reply.errorReply('ERR mu-proxy: no snapshot from this replica now (nothing applied yet, another snapshot under way, or its own backend failed)'));
        return;
      }
      try {
        const keys = await streamSnapshot(this.front.channel, cursor, write);
        this.front.counters.snapshotsServed++;
        this.front.log(`sent a snapshot of ${keys} keys (through index ${cursor.nextIndex - 1}) to a replica getting back in step`);
      } finally {
        pipeline.release();
      }
    };
    void serve()
      .catch((error: Error) => {
        if (!this.closed) void write(reply.errorReply(`ERR mu-proxy: the snapshot failed: ${error.message}`)).catch(() => {});
      })
      .then(() => this.releaseDeferred());
  }

  // --- at a follower: the connection handed to the leader ------------------------------

  // Whether a request of this class must be served by the leader.
  private needsLeader(commandClass: CommandClass, name: string): boolean {
    switch (commandClass) {
      case 'read':
        return this.front.options.readMode !== 'any';
      case 'script':
        return scriptWrites.has(name) || this.front.options.readMode !== 'any';
      case 'write':
      case 'write-rewrite':
      case 'write-effects':
      case 'transaction':
      case 'blocking':
      case 'pubsub':
        return true;
      default:
        return false;
    }
  }

  // At a follower (followerRequests "forward"): hands this connection to the leader's
  // proxy, starting with `argv`. False when it cannot (this replica leads, no leader is
  // known, forwarding is off, or the connection came from another replica); the request
  // is then served, or refused, here.
  private forwardToLeader(argv: Buffer[]): boolean {
    const front = this.front;
    if (front.replica.isLeader || this.forwarded || front.options.followerRequests !== 'forward') return false;
    // A transaction queued here while this replica led: its EXEC is refused here (the
    // leader has not seen its MULTI), rather than sent up on its own.
    if (this.transaction !== undefined) return false;
    const leaderId = front.replica.role.leaderId;
    if (leaderId === null || leaderId === front.replica.nodeId) return false;
    const address = front.clientAddressOf(leaderId);
    if (address === undefined) return false;
    const setup: Buffer[] = [encodeCommand(['MU', 'FORWARDED', ...front.peerAuth.arguments('forwarded', (this.user as AclUser).name)])];
    if (this.db !== 0) setup.push(encodeCommand(['SELECT', String(this.db)]));
    if (this.name !== undefined) setup.push(encodeCommand([Buffer.from('CLIENT'), Buffer.from('SETNAME'), this.name]));
    // Keys WATCHed here (while this replica led) are watched no more here; the leader cannot
    // know what was written since, so the next EXEC there must abort.
    if (this.watching !== undefined) {
      setup.push(encodeCommand(['MU', 'WATCHLOST']));
      this.unwatch();
    }
    const slot = this.reserve();
    const link = new LeaderLink({
      host: address.host,
      port: address.port,
      setup,
      maxHeldBytes: front.options.maxOutputBytes,
      deliver: (frame) => this.deliverFrame(frame),
      ended: () => this.close(),
    });
    // The link is to one leader: when another one takes over (or none), the client is let
    // go and reconnects; its next request finds the new leader.
    const onRoleChange = () => {
      if (front.replica.role.leaderId !== leaderId) this.close();
    };
    this.upstream = { link, leaderId, onRoleChange };
    front.roleListeners.add(onRoleChange);
    front.counters.forwardedClients++;
    this.forwardUp(argv, link);
    this.replies.hold(slot, link);
    return true;
  }

  private forwardUp(argv: Buffer[], link: LeaderLink): void {
    if (link.forward(argv) || this.paused) return;
    // The leader reads slower than this client writes: stop reading until it catches up.
    this.paused = true;
    this.socket.pause();
    link.whenDrained(() => {
      this.paused = false;
      if (!this.closed) this.socket.resume();
    });
  }

  // --- pub/sub: served by the leader's backend, not replicated --------------------------

  private pubsub(argv: Buffer[], name: string): void {
    if (name === 'subscribe' || name === 'psubscribe' || name === 'ssubscribe') {
      this.subscribe(argv);
      return;
    }
    if (name === 'unsubscribe' || name === 'punsubscribe' || name === 'sunsubscribe') {
      // Not subscribed: Redis confirms each name (or one nil) with a count of 0, and sends
      // several frames for one request, which the shared backend channel cannot carry.
      const names = argv.length > 1 ? argv.slice(1) : [undefined];
      const kind = reply.bulk(name);
      this.answer(Buffer.concat(names.map((channel) => reply.array([kind, channel === undefined ? reply.nilBulk : reply.bulk(channel), reply.integer(0)]))));
      return;
    }
    // PUBLISH, SPUBLISH, PUBSUB ...: the leader's server, where the subscribers are.
    this.read(argv, 'leader');
  }

  private subscribe(argv: Buffer[]): void {
    const slot = this.reserve();
    if (!this.front.replica.isLeader) {
      this.fill(slot, this.front.readRefusal());
      return;
    }
    const relay = new SubscriberRelay({
      backend: this.front.backendAddress,
      maxHeldBytes: this.front.options.maxOutputBytes,
      deliver: (frame) => this.deliverFrame(frame),
      failed: (reason) => {
        this.front.counters.subscriptionFailures++;
        this.subscriptionFailed(reason);
      },
    });
    // Subscribers follow the leader: a replica that stops leading lets them go, and their
    // clients resubscribe at the new one.
    const onRoleChange = () => {
      if (!this.front.replica.isLeader) this.close();
    };
    this.subscription = { relay, slot, onRoleChange };
    this.front.roleListeners.add(onRoleChange);
    relay.forward(argv);
    this.replies.hold(slot, relay);
  }

  // A request on a subscribed connection. SUBSCRIBE and kin and PING go to the relay; the
  // rest waits until the relay has answered everything before it, and then either the
  // connection is still subscribed (the request is refused, as Redis refuses it) or it is
  // not any more (the relay is closed and the request served as usual).
  private dispatchSubscribed(argv: Buffer[], name: string, subscription: { relay: SubscriberRelay }): void {
    const { relay } = subscription;
    const found = this.front.table.lookup(argv);
    const valid = found !== undefined && arityOk(found.info, argv.length);
    // Redis checks the user's permissions before the subscribed context.
    const denial = valid ? this.permissionDenial(name, argv) : undefined;
    if (valid && denial === undefined && subscribedCommands.has(name) && (!relay.quiet || relay.subscribed)) {
      relay.forward(argv);
      return;
    }
    if (!relay.quiet) {
      this.deferred = [argv];
      relay.whenQuiet(() => this.releaseDeferred());
      return;
    }
    if (relay.subscribed && name !== 'quit' && name !== 'reset') {
      // Checked in Redis' order: unknown command, arity, then the subscribed context.
      // Through the relay: after its frames, which wait while earlier replies are owed.
      if (found === undefined) relay.inject(unknownCommand(argv));
      else if (!valid) relay.inject(wrongArity(found.info.name));
      else if (denial !== undefined) relay.inject(denial);
      else {
        relay.inject(
          reply.errorReply(`ERR Can't execute '${found.info.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`),
        );
      }
      return;
    }
    this.endSubscription();
    this.dispatch(argv);
  }

  // The connection left the subscribed state (or RESET or QUIT): the relay goes, and the
  // replies after it are released.
  private endSubscription(): void {
    const subscription = this.subscription;
    if (subscription === undefined) return;
    this.subscription = undefined;
    subscription.relay.close();
    this.front.roleListeners.delete(subscription.onRoleChange);
    this.fill(subscription.slot, Buffer.alloc(0));
  }

  private subscriptionFailed(reason: string): void {
    if (this.closed) return;
    this.deliverFrame(reply.errorReply(`ERR mu-proxy: ${reason}`));
    this.close();
  }

  // A frame of the subscription, written as it comes (its slot is at the head).
  private deliverFrame(frame: Buffer): void {
    if (this.closed) return;
    this.socket.write(frame);
    this.front.counters.replyBytes += frame.length;
    if (this.socket.writableLength > this.front.options.maxOutputBytes) {
      this.front.counters.outputLimitCloses++;
      this.close();
    }
  }

  // --- replies, in request order --------------------------------------------------------

  private reserve(): ReplySlot {
    return this.replies.reserve();
  }

  private answer(data: Buffer): void {
    this.fill(this.reserve(), data);
  }

  private fill(slot: ReplySlot, data: Buffer): void {
    if (this.closed) return;
    const written = this.replies.fill(slot, data, (ready) => {
      this.socket.cork();
      for (const reply of ready) this.socket.write(reply);
      process.nextTick(() => this.socket.uncork());
      this.front.counters.replyBytes += ready.reduce((sum, reply) => sum + reply.length, 0);
    });
    if (!written) return;
    if (this.ending && this.replies.length === 0) {
      this.socket.end(); // after the earlier replies and the error; 'close' follows
      return;
    }
    if (this.socket.writableLength > this.front.options.maxOutputBytes) {
      // A client that does not read its replies cannot grow the proxy's memory.
      this.front.counters.outputLimitCloses++;
      this.close();
      return;
    }
    this.resumeIfRoom();
  }

  private resumeIfRoom(): void {
    if (this.ending) return;
    if (this.paused && this.waitingRequests < this.front.options.maxPipeline / 2 && this.socket.writableLength < this.front.options.maxOutputBytes / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private protocolError(message: string): void {
    if (this.closed || this.ending) return;
    this.front.counters.protocolErrors++;
    this.ending = true;
    this.socket.pause();
    this.answer(reply.errorReply(`ERR Protocol error: ${message}`));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    this.wakeBlocked?.();
    if (this.subscription !== undefined) {
      this.subscription.relay.close();
      this.front.roleListeners.delete(this.subscription.onRoleChange);
    }
    if (this.upstream !== undefined) {
      this.upstream.link.close();
      this.front.roleListeners.delete(this.upstream.onRoleChange);
    }
    this.socket.destroy();
    this.front.sessionClosed(this);
  }
}

type ReadPlace = 'linearizable' | 'leader' | 'any' | 'local';

// The id of the entry in XREVRANGE ... COUNT 1's reply (`*1 *2 $id ...`); undefined when
// the stream has none.
function lastStreamId(raw: Buffer): Buffer | undefined {
  if (!raw.subarray(0, 8).equals(Buffer.from('*1\r\n*2\r\n'))) return undefined;
  const lengthEnd = raw.indexOf('\r\n', 8);
  const length = Number(raw.toString('latin1', 9, lengthEnd));
  return raw.subarray(lengthEnd + 2, lengthEnd + 2 + length);
}

// SORT's options read as sort.c reads them, in order (strcasecmp: up to the first NUL):
// Redis' error for the first BY with a pattern or GET, for a user without full key access;
// undefined when there is none, or an error of another kind comes first (the backend's).
function sortPatternDenial(argv: Buffer[], readonly: boolean): Buffer | undefined {
  const word = (i: number): string => {
    const arg = argv[i] as Buffer;
    const nul = arg.indexOf(0);
    return (nul < 0 ? arg : arg.subarray(0, nul)).toString('latin1').toLowerCase();
  };
  for (let j = 2; j < argv.length; j++) {
    const left = argv.length - j - 1;
    const option = word(j);
    if (option === 'asc' || option === 'desc' || option === 'alpha') continue;
    if (option === 'limit' && left >= 2) {
      if (!isRedisInteger(word(j + 1)) || !isRedisInteger(word(j + 2))) return undefined;
      j += 2;
    } else if (!readonly && option === 'store' && left >= 1) j++;
    else if (option === 'by' && left >= 1) {
      if (word(j + 1).includes('*')) return reply.errorReply('ERR BY option of SORT denied due to insufficient ACL permissions.');
      j++;
    } else if (option === 'get' && left >= 1) return reply.errorReply('ERR GET option of SORT denied due to insufficient ACL permissions.');
    else return undefined;
  }
  return undefined;
}

// MU FORWARDED / MU PEER: how another replica's proxy authenticates (peer_auth.ts).
function isPeerGreeting(name: string, argv: Buffer[]): boolean {
  if (name !== 'mu' || argv.length < 2) return false;
  const sub = (argv[1] as Buffer).toString('latin1').toLowerCase();
  return sub === 'forwarded' || sub === 'peer';
}

// Redis' string2ll: no sign but '-', no leading zeros, no "-0", within 64 bits.
function isRedisInteger(text: string): boolean {
  return /^(0|-?[1-9]\d*)$/.test(text) && BigInt(text) <= 2n ** 63n - 1n && BigInt(text) >= -(2n ** 63n);
}

// The one reply inside EXEC's `*1` reply; undefined when `raw` is not such a reply (an
// error the proxy gave instead).
function onlyExecElement(raw: Buffer): Buffer | undefined {
  const header = Buffer.from('*1\r\n');
  return raw.length > header.length && raw.subarray(0, header.length).equals(header) ? raw.subarray(header.length) : undefined;
}

// A pop inside MULTI answers a null array, or a null bulk for BRPOPLPUSH and BLMOVE.
function isNil(element: Buffer): boolean {
  return element.equals(reply.nilArray) || element.equals(reply.nilBulk);
}

// Redis 7.0 names subcommands "container|sub" in this message.
function wrongArity(name: string): Buffer {
  return reply.errorReply(`ERR wrong number of arguments for '${name}' command`);
}

// As Redis builds it: arguments quoted while the list is under 128 bytes, each cut to
// what is left of those 128; every CR or LF becomes a space.
function unknownCommand(argv: Buffer[]): Buffer {
  let args = '';
  for (let i = 1; i < argv.length && Buffer.byteLength(args, 'latin1') < 128; i++) {
    const room = 128 - Buffer.byteLength(args, 'latin1');
    args += `'${(argv[i] as Buffer).subarray(0, room).toString('latin1')}' `;
  }
  const name = (argv[0] as Buffer).subarray(0, 128).toString('latin1');
  const text = `ERR unknown command '${name}', with args beginning with: ${args}`.replace(/[\r\n]/g, ' ');
  return Buffer.concat([Buffer.from('-'), Buffer.from(text, 'latin1'), Buffer.from('\r\n')]);
}

// The channels (PSUBSCRIBE: the patterns) a pub/sub command names, for the user's channel
// rules; undefined for commands that name none.
function channelArguments(name: string, argv: Buffer[]): Buffer[] | undefined {
  switch (name) {
    case 'publish':
    case 'spublish':
      return argv.slice(1, 2);
    case 'subscribe':
    case 'ssubscribe':
    case 'psubscribe':
      return argv.slice(1);
    default:
      return undefined;
  }
}
