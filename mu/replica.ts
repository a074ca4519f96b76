// One replica of a Mu cluster, as the proxy uses it: propose commands (the promise
// resolves with the log index once this replica has applied the command, which at the
// leader means it is committed), and receive every committed entry in log order.
//
// Proposals made in one event-loop turn reach the engine together: they are queued and
// handed over in one native call from a setImmediate, where the engine's leader batches
// them into as few entries as fit. Memory stays bounded: the native submission ring
// pushes back, and beyond `maxQueuedProposals` waiting here propose() refuses with BUSY.
//
// Every proposal settles. Besides success:
//   NOT_LEADER  the command was never written to any log (this replica does not lead):
//               retry through the leader.
//   LOST        this replica lost leadership while the command was in flight and it was
//               not chosen; it never will be: safe to retry.
//   UNKNOWN     this replica's reign ended while the command was in flight, and
//               `unknownOutcomeMs` later it still cannot tell whether it was chosen (it
//               cannot reach the next leader's log: a partition). It may yet be applied:
//               not safe to retry blindly.
//   BUSY, TOO_LARGE, STOPPED, NEEDS_STATE_TRANSFER: as named; nothing was written.
import { EventEmitter } from 'node:events';

import { parseEvents, type AppliedCommand, type CandidacyName, type NativeEvent, type RoleName } from './events.js';
import { native, type NativeReplica, type NativeReplicaOptions, type NativeReplicaStatus } from './native.js';

export type { AppliedCommand, RoleName } from './events.js';

export type ProposalErrorCode = 'NOT_LEADER' | 'LOST' | 'UNKNOWN' | 'BUSY' | 'TOO_LARGE' | 'STOPPED' | 'NEEDS_STATE_TRANSFER';

export class ProposalError extends Error {
  readonly code: ProposalErrorCode;
  constructor(code: ProposalErrorCode, message: string) {
    super(message);
    this.name = 'ProposalError';
    this.code = code;
  }
}

export interface AppliedEntry {
  index: number;
  // With index + 1, the log cursor just past this entry: a snapshot of the application's
  // state taken right after applying it lets another replica resume from there
  // (resumeFromStateTransfer).
  nextPosition: number;
  commands: AppliedCommand[];
}

export interface RoleChange {
  role: RoleName;
  candidacy: CandidacyName;
  leaderId: number | null; // whom this replica's log is granted to
  proposal: number;
}

export interface LatencySummary {
  samples: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

export interface ReplicaStatus extends NativeReplicaStatus {
  nodeId: number;
  queuedProposals: number;
  outstandingProposals: number;
  proposeToCommit: LatencySummary;
}

export interface ReplicaTuning {
  maxQueuedProposals?: number; // default 65536
  // After handing proposals to the engine, spin this long for their outcome before
  // leaving it to the event callback (a sleeping event loop takes ~10 us or more to wake
  // on a busy machine; a commit takes ~1 us). Switched off by itself while it rarely
  // pays (see pollForOutcome). 0 disables. Default 20.
  pollAfterSubmitUs?: number;
  // How long after its reign ended a command in flight may wait for its fate before it
  // settles as UNKNOWN; 0: for ever. Default 5000.
  unknownOutcomeMs?: number;
}

interface Pending {
  data: Buffer;
  resolve: (index: number) => void;
  reject: (error: ProposalError) => void;
  startedNs: bigint;
}

const latencyWindow = 4096;
const pollWindow = 16;
const pollBackoffFlushes = 256;

export interface ReplicaEventMap {
  applied: [entry: AppliedEntry];
  role: [change: RoleChange];
  'needs-state-transfer': [nextIndex: number];
  // change: the number reconnectPeer() or releaseLink() returned for it.
  'peer-reconnected': [peer: number, ok: boolean, change: number];
  // After resumeFromStateTransfer: whether the replica resumed (false: it needed none).
  'state-transfer-resumed': [nextIndex: number, resumed: boolean];
}

export class Replica extends EventEmitter<ReplicaEventMap> {
  readonly nodeId: number;
  private readonly handle: NativeReplica;
  private readonly maxQueued: number;
  private readonly commandLimit: number;
  private readonly pollAfterSubmitUs: number;
  private readonly unknownOutcomeMs: number;
  private readonly unknownTimers = new Set<NodeJS.Timeout>();
  private pollsInWindow = 0;
  private pollHitsInWindow = 0;
  private pollsToSkip = 0;
  private pollsSkipped = 0;
  private queue: Pending[] = [];
  private readonly outstanding = new Map<number, Pending>();
  private flushScheduled = false;
  private started = false;
  private stopped = false;
  private lastRole: RoleChange = { role: 'follower', candidacy: 'idle', leaderId: null, proposal: 0 };
  private readonly latenciesUs = new Float64Array(latencyWindow);
  private latencyCount = 0;
  // For an owner that times its requests' stages (proxy/redis/latency_trace.ts): when set,
  // when the last flush began, when its batch was handed to the engine, and when events
  // last came from it, as process.hrtime.bigint() values. Off by default.
  recordTimes = false;
  lastFlushNs = 0n;
  lastSubmitNs = 0n;
  lastDeliveryNs = 0n;

  constructor(options: NativeReplicaOptions, tuning: ReplicaTuning = {}) {
    super();
    this.nodeId = options.nodeId;
    this.handle = new native.Replica(options);
    this.maxQueued = tuning.maxQueuedProposals ?? 65536;
    this.commandLimit = this.handle.maxCommandBytes();
    this.pollAfterSubmitUs = tuning.pollAfterSubmitUs ?? 20;
    this.unknownOutcomeMs = tuning.unknownOutcomeMs ?? 5000;
  }

  // What the other replicas need to reach this one (exchanged by the control plane).
  card(): Buffer {
    return this.handle.card();
  }

  // cards[i] is replica i's card, this one's included; null for a peer not heard from yet
  // (down, or slower to start): a majority is enough, and a missing peer is connected when
  // its card comes (reconnectPeer), as a restarted one is.
  connect(cards: Array<Buffer | null>): void {
    this.handle.connect(cards);
  }

  // Replica `card`'s owner restarted (a new incarnation): reconnect to it. It then rejoins
  // through the leader and catches up from the log (see 'peer-reconnected').
  //
  // `hold`: the first half of a paired reset of the link to a live peer (its current card):
  // this replica's ends are reset and left unconnected until releaseLink(), once the peer
  // has reset its own (mu/link_resets.ts). Returns the change's number, which its
  // 'peer-reconnected' event carries (changes are carried out in the order made).
  reconnectPeer(card: Buffer, hold = false): number {
    return this.handle.reconnectPeer(card, hold);
  }

  releaseLink(peer: number): number {
    return this.handle.releaseLink(peer);
  }

  // The application lost its state (its store failed or came back empty): this replica
  // stops applying, steps down if it leads, and takes no part until
  // resumeFromStateTransfer. A 'needs-state-transfer' event follows.
  requestStateTransfer(): void {
    this.handle.requestStateTransfer();
  }

  // The application restored a snapshot taken on another replica right after it applied
  // entry nextIndex - 1 (whose AppliedEntry.nextPosition is `position`): continue from
  // there. A 'state-transfer-resumed' event says when.
  resumeFromStateTransfer(nextIndex: number, position: number): void {
    this.handle.resumeFromStateTransfer(nextIndex, position);
  }

  start(): void {
    if (this.started) throw new Error('replica: already started');
    this.started = true;
    this.handle.start((records) => this.onEvents(records));
  }

  get role(): RoleChange {
    return this.lastRole;
  }

  // The largest command propose() takes (an entry's payload, less the engine's own header).
  get maxCommandBytes(): number {
    return this.commandLimit;
  }

  get isLeader(): boolean {
    return this.lastRole.role === 'leader';
  }

  propose(command: Buffer): Promise<number>;
  propose(commands: Buffer[]): Promise<number[]>;
  propose(input: Buffer | Buffer[]): Promise<number> | Promise<number[]> {
    if (Array.isArray(input)) return Promise.all(input.map((command) => this.proposeOne(command)));
    return this.proposeOne(input);
  }

  status(): ReplicaStatus {
    return {
      ...this.handle.status(),
      nodeId: this.nodeId,
      queuedProposals: this.queue.length,
      outstandingProposals: this.outstanding.size,
      proposeToCommit: this.latencySummary(),
    };
  }

  // Stops the engine thread; every proposal still waiting is rejected with STOPPED.
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.unknownTimers) clearTimeout(timer);
    this.unknownTimers.clear();
    this.handle.stop();
    const error = () => new ProposalError('STOPPED', 'the replica was stopped before the command was applied');
    for (const pending of this.queue) pending.reject(error());
    for (const pending of this.outstanding.values()) pending.reject(error());
    this.queue = [];
    this.outstanding.clear();
  }

  private proposeOne(data: Buffer): Promise<number> {
    if (!this.started || this.stopped) {
      return Promise.reject(new ProposalError('STOPPED', 'the replica is not running'));
    }
    if (data.length > this.commandLimit) {
      return Promise.reject(
        new ProposalError('TOO_LARGE', `a command of ${data.length} bytes exceeds the ${this.commandLimit}-byte limit`),
      );
    }
    if (this.queue.length >= this.maxQueued) {
      return Promise.reject(new ProposalError('BUSY', `${this.queue.length} proposals are already waiting`));
    }
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ data, resolve, reject, startedNs: process.hrtime.bigint() });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.recordTimes) this.lastFlushNs = process.hrtime.bigint();
    this.flushScheduled = false;
    if (this.stopped || this.queue.length === 0) return;
    const batch = this.queue.length > 4096 ? this.queue.slice(0, 4096) : this.queue;
    const [firstSequence, taken] = this.handle.submit(batch.map((pending) => pending.data));
    if (this.recordTimes) this.lastSubmitNs = process.hrtime.bigint();
    for (let i = 0; i < taken; i++) this.outstanding.set(firstSequence + i, this.queue[i] as Pending);
    this.queue.splice(0, taken);
    // The ring was full: the engine empties it within microseconds, so try again soon.
    if (this.queue.length > 0) this.scheduleFlush();
    if (taken > 0) this.pollForOutcome();
  }

  // Spinning for the outcome pays only when the engine thread has a core to answer on; on
  // an oversubscribed machine the spin takes that core and the answer comes later than
  // the event loop's own wake-up would. So the spin is watched: when fewer than three in
  // four of a window of polls find the outcome, it is left off for a while, then tried again.
  private pollForOutcome(): void {
    if (this.pollAfterSubmitUs === 0) return;
    if (this.pollsSkipped < this.pollsToSkip) {
      this.pollsSkipped++;
      return;
    }
    const records = this.handle.poll(this.pollAfterSubmitUs);
    this.pollsInWindow++;
    if (records !== undefined) {
      this.pollHitsInWindow++;
      this.onEvents(records);
    }
    if (this.pollsInWindow < pollWindow) return;
    const worthIt = this.pollHitsInWindow * 4 >= this.pollsInWindow * 3;
    this.pollsToSkip = worthIt ? 0 : pollBackoffFlushes;
    this.pollsSkipped = 0;
    this.pollsInWindow = 0;
    this.pollHitsInWindow = 0;
  }

  private onEvents(records: Buffer): void {
    if (this.recordTimes) this.lastDeliveryNs = process.hrtime.bigint();
    let events: NativeEvent[];
    try {
      events = parseEvents(records);
    } catch (error) {
      // A bug, not an input: the records come from our own engine. Say so loudly.
      process.emitWarning(`mu replica ${this.nodeId}: ${(error as Error).message}`);
      return;
    }
    for (const event of events) this.onEvent(event);
  }

  private onEvent(event: NativeEvent): void {
    switch (event.kind) {
      case 'applied': {
        for (const command of event.commands) {
          if (command.origin !== this.nodeId) continue;
          const pending = this.outstanding.get(command.sequence);
          if (pending === undefined) continue;
          this.outstanding.delete(command.sequence);
          this.recordLatency(pending.startedNs);
          pending.resolve(event.index);
        }
        this.emit('applied', { index: event.index, nextPosition: event.nextPosition, commands: event.commands });
        break;
      }
      case 'dropped':
        this.settleWithError(event.sequence, 'NOT_LEADER', 'this replica is not the leader; nothing was written');
        break;
      case 'fates-known':
        for (const sequence of [...this.outstanding.keys()]) {
          if (sequence <= event.throughSequence) {
            this.settleWithError(sequence, 'LOST', 'leadership changed while the command was in flight; it was not applied');
          }
        }
        break;
      case 'reign-ended':
        // The fates-known event that follows settles these; when it cannot come (this
        // replica reaches no majority), they settle as UNKNOWN after a while.
        this.boundUnknownFates(event.lastTakenSequence);
        break;
      case 'role':
        this.lastRole = { role: event.role, candidacy: event.candidacy, leaderId: event.holder, proposal: event.proposal };
        this.emit('role', this.lastRole);
        break;
      case 'peer-reconnected':
        this.emit('peer-reconnected', event.peer, event.ok, event.change);
        break;
      case 'needs-state-transfer':
        for (const sequence of [...this.outstanding.keys()]) {
          this.settleWithError(sequence, 'NEEDS_STATE_TRANSFER', 'this replica fell behind the recycled log');
        }
        this.emit('needs-state-transfer', event.nextIndex);
        break;
      case 'state-transfer-resumed':
        this.emit('state-transfer-resumed', event.nextIndex, event.resumed);
        break;
    }
  }

  private boundUnknownFates(throughSequence: number): void {
    if (this.unknownOutcomeMs <= 0) return;
    const inFlight = [...this.outstanding.keys()].filter((sequence) => sequence <= throughSequence);
    if (inFlight.length === 0) return;
    const timer = setTimeout(() => {
      this.unknownTimers.delete(timer);
      for (const sequence of inFlight) {
        this.settleWithError(
          sequence,
          'UNKNOWN',
          `this replica stopped leading while the command was in flight and, ${this.unknownOutcomeMs} ms later, still cannot reach the cluster to learn whether it was applied; it may yet be`,
        );
      }
    }, this.unknownOutcomeMs);
    timer.unref();
    this.unknownTimers.add(timer);
  }

  private settleWithError(sequence: number, code: ProposalErrorCode, message: string): void {
    const pending = this.outstanding.get(sequence);
    if (pending === undefined) return;
    this.outstanding.delete(sequence);
    pending.reject(new ProposalError(code, message));
  }

  private recordLatency(startedNs: bigint): void {
    this.latenciesUs[this.latencyCount % latencyWindow] = Number(process.hrtime.bigint() - startedNs) / 1000;
    this.latencyCount++;
  }

  private latencySummary(): LatencySummary {
    const count = Math.min(this.latencyCount, latencyWindow);
    const sorted = Array.from(this.latenciesUs.subarray(0, count)).sort((a, b) => a - b);
    const at = (fraction: number) => (count === 0 ? 0 : (sorted[Math.min(count - 1, Math.floor(fraction * count))] ?? 0));
    return { samples: count, p50Us: at(0.5), p90Us: at(0.9), p99Us: at(0.99) };
  }
}
