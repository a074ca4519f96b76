// Test support: a linearizability checker for histories of Redis string operations on
// independent keys (SET, GET, INCR), as clients recorded them while faults were injected.
//
// A history is linearizable when every operation can be given one instant between its
// invocation and its completion such that, applied in the order of those instants, each
// key behaves like one Redis string: SET k v makes it v; GET k returns what it holds
// (nil at first); INCR k adds one to it (nil counts as 0) and returns the new value. The
// same model covers a register (SET/GET, initially nil) and a counter (INCR, initially 0).
// Keys are independent (linearizability is compositional: a history is linearizable iff
// each key's sub-history is), so each key is checked on its own.
//
// The search is Wing & Gong's, as improved by Lowe ("Testing for linearizability", 2017)
// and used by Porcupine: the history is a list of call and return events in time order;
// an operation may be linearized while its call lies before the first return still in
// the list; reaching a return whose operation was not linearized backtracks. Each
// (set of linearized operations, state) configuration is explored once (memoised), which
// keeps histories of thousands of operations per key with a handful of concurrent
// clients fast.
//
// What the caller records:
// - A definite outcome (the reply came back): completeMs set; output for GET (a string,
//   or null for nil) and INCR (the new value).
// - An unknown outcome (a timeout, a dropped connection, or an error that does not say
//   the command was never applied, such as TRYAGAIN or a failed backend): completeMs
//   undefined. Such an operation may take effect at any instant after its invocation, or
//   never, and its output is not known.
// - A definite failure, an error reply known to be given before anything was proposed
//   (READONLY, CLUSTERDOWN, NOAUTH, MASTERDOWN from a refusing replica): the command never
//   applied, so the caller may drop it from the history. Keeping it as unknown is also
//   correct, only weaker.
//
// Two reductions keep unknown operations from blowing the search up, both exact:
// - An unknown GET constrains nothing (no output, no effect): dropped. An unknown SET
//   whose value no completed GET returned is dropped too, unless the key has INCRs and
//   the value is an integer: once it applied, the next operation on the key that is not
//   another SET would have to be a GET returning its value or an INCR counting from it,
//   so leaving it out of any linearization keeps every other operation valid.
// - Unknown operations of the same kind and input (every unknown INCR of a key) are
//   interchangeable: only orders that apply them in invocation order are searched (swap
//   any two and the linearization stays valid, since neither has a deadline).

export type OperationKind = 'set' | 'get' | 'incr';

interface OperationCommon {
  client: number;
  key: string;
  // One monotonic clock for the whole history (performance.now() in the tests); only
  // the order of the instants matters.
  invokeMs: number;
  // Undefined when the outcome is unknown.
  completeMs: number | undefined;
}

export type HistoryEntry =
  | (OperationCommon & { kind: 'set'; input: string })
  // output: the value read, null for nil; undefined only with an unknown outcome.
  | (OperationCommon & { kind: 'get'; output: string | null | undefined })
  // output: INCR's reply (the new value); undefined only with an unknown outcome.
  | (OperationCommon & { kind: 'incr'; output: number | undefined });

export interface KeyFailure {
  key: string;
  // True when the search gave up (maxStepsPerKey) without deciding: not a proof of a
  // violation, but reported as a failure so that it is looked at.
  undecided: boolean;
  explanation: string;
}

export interface LinearizabilityResult {
  ok: boolean;
  keysChecked: number;
  operationsChecked: number; // after the reductions above
  failures: KeyFailure[];
  // Set when not ok: the failures, one paragraph per key.
  explanation?: string;
}

export interface CheckOptions {
  // The search's steps per key before it gives up undecided.
  maxStepsPerKey?: number;
}

const DEFAULT_MAX_STEPS_PER_KEY = 20_000_000;
// How many operations an explanation lists around the point where the search failed.
const EXPLANATION_OPERATIONS_MAX = 8;

// --- the model: one Redis string ------------------------------------------------------

type State = string | null;
const INVALID: unique symbol = Symbol('invalid');

// Redis' string2ll: an optional minus and digits, no leading zeros, no plus sign.
const REDIS_INTEGER = /^(0|-?[1-9][0-9]*)$/;

// The state after `entry` applied to `state`, or INVALID when `entry` cannot happen in
// `state` (its output disagrees, or an INCR meets a value that is not an integer).
function step(state: State, entry: HistoryEntry): State | typeof INVALID {
  switch (entry.kind) {
    case 'set':
      return entry.input;
    case 'get':
      // An unknown GET never reaches the search (dropped up front).
      return entry.output === state ? state : INVALID;
    case 'incr': {
      if (state !== null && !REDIS_INTEGER.test(state)) return INVALID; // INCR would fail and change nothing
      const next = (state === null ? 0 : Number(state)) + 1;
      if (entry.completeMs !== undefined && entry.output !== next) return INVALID;
      return String(next);
    }
  }
}

function stateKey(state: State): string {
  return state === null ? '\u0000' : `\u0001${state}`;
}

function describeState(state: State): string {
  return state === null ? 'nil' : JSON.stringify(state);
}

function describeTime(ms: number | undefined): string {
  return ms === undefined ? '?' : ms.toFixed(3);
}

export function describeEntry(entry: HistoryEntry): string {
  const unknown = entry.completeMs === undefined;
  let what: string;
  switch (entry.kind) {
    case 'set':
      what = `SET ${JSON.stringify(entry.input)}${unknown ? ' (outcome unknown)' : ' -> OK'}`;
      break;
    case 'get':
      what = `GET${unknown ? ' (outcome unknown)' : ` -> ${entry.output === null || entry.output === undefined ? 'nil' : JSON.stringify(entry.output)}`}`;
      break;
    case 'incr':
      what = `INCR${unknown ? ' (outcome unknown)' : ` -> ${entry.output}`}`;
      break;
  }
  return `client ${entry.client}: ${what} [${describeTime(entry.invokeMs)} .. ${describeTime(entry.completeMs)} ms]`;
}

function validate(entry: HistoryEntry): void {
  if (!Number.isFinite(entry.invokeMs)) throw new Error(`bad invocation time: ${describeEntry(entry)}`);
  if (entry.completeMs !== undefined && !(entry.completeMs >= entry.invokeMs)) {
    throw new Error(`completes before it is invoked: ${describeEntry(entry)}`);
  }
  if (entry.completeMs !== undefined && entry.kind !== 'set' && entry.output === undefined) {
    throw new Error(`a completed ${entry.kind.toUpperCase()} needs its output: ${describeEntry(entry)}`);
  }
}

// --- the search ---------------------------------------------------------------------

// The reductions described in the module comment.
function reduce(entries: HistoryEntry[]): HistoryEntry[] {
  const valuesRead = new Set<string>();
  let hasIncr = false;
  for (const entry of entries) {
    if (entry.kind === 'get' && entry.completeMs !== undefined && entry.output !== null && entry.output !== undefined) {
      valuesRead.add(entry.output);
    }
    if (entry.kind === 'incr') hasIncr = true;
  }
  return entries.filter((entry) => {
    if (entry.completeMs !== undefined) return true;
    if (entry.kind === 'get') return false;
    if (entry.kind === 'set') return valuesRead.has(entry.input) || (hasIncr && REDIS_INTEGER.test(entry.input));
    return true;
  });
}

interface Deepest {
  depth: number;
  state: State;
  blocked: number; // the operation whose return the search could not get past
  candidates: number[]; // the operations that could have come next
  lastLinearized: number[]; // the most recently linearized, latest last
}

// Checks one key's operations; undefined when linearizable.
function checkKey(key: string, operations: HistoryEntry[], maxSteps: number): KeyFailure | undefined {
  const count = operations.length;
  // Events: a call for every operation, a return for each completed one. At equal times a
  // call sorts before a return, so touching operations count as concurrent (the lenient
  // reading of a clock that cannot tell them apart).
  interface Event {
    operation: number;
    call: boolean;
    at: number;
  }
  const events: Event[] = [];
  for (let i = 0; i < count; i++) {
    const entry = operations[i] as HistoryEntry;
    events.push({ operation: i, call: true, at: entry.invokeMs });
    if (entry.completeMs !== undefined) events.push({ operation: i, call: false, at: entry.completeMs });
  }
  events.sort((a, b) => a.at - b.at || (a.call === b.call ? a.operation - b.operation : a.call ? -1 : 1));

  // A doubly linked list over the events; node 0 is the head, event i is node i + 1.
  const nodes = events.length + 1;
  const next = new Int32Array(nodes);
  const previous = new Int32Array(nodes);
  const operationOf = new Int32Array(nodes);
  const isCall = new Uint8Array(nodes);
  const returnNodeOf = new Int32Array(count).fill(-1); // by operation
  const callNodeOf = new Int32Array(count);
  for (let node = 0; node < nodes; node++) {
    next[node] = node + 1 < nodes ? node + 1 : -1;
    previous[node] = node - 1;
    if (node === 0) continue;
    const event = events[node - 1] as Event;
    operationOf[node] = event.operation;
    isCall[node] = event.call ? 1 : 0;
    if (event.call) callNodeOf[event.operation] = node;
    else returnNodeOf[event.operation] = node;
  }
  const unlink = (node: number): void => {
    const after = next[node] as number;
    next[previous[node] as number] = after;
    if (after !== -1) previous[after] = previous[node] as number;
  };
  const relink = (node: number): void => {
    const after = next[node] as number;
    next[previous[node] as number] = node;
    if (after !== -1) previous[after] = node;
  };
  // Lifting takes an operation's call and return out of the list; unlifting puts them back
  // (in the reverse order, so the saved neighbours are right again).
  const lift = (callNode: number): void => {
    unlink(callNode);
    const returnNode = returnNodeOf[operationOf[callNode] as number] as number;
    if (returnNode !== -1) unlink(returnNode);
  };
  const unlift = (callNode: number): void => {
    const returnNode = returnNodeOf[operationOf[callNode] as number] as number;
    if (returnNode !== -1) relink(returnNode);
    relink(callNode);
  };

  // Interchangeable unknown operations: each group in invocation order (the list's order),
  // and how many of each group are linearized (always the first ones).
  const groupOf = new Int32Array(count).fill(-1);
  const groupMembers: number[][] = [];
  const groupUsed: number[] = [];
  {
    const groups = new Map<string, number>();
    for (let node = 1; node < nodes; node++) {
      if (isCall[node] === 0) continue;
      const operation = operationOf[node] as number;
      const entry = operations[operation] as HistoryEntry;
      if (entry.completeMs !== undefined) continue;
      const signature = entry.kind === 'set' ? `set\u0000${entry.input}` : entry.kind;
      let group = groups.get(signature);
      if (group === undefined) {
        group = groupMembers.length;
        groups.set(signature, group);
        groupMembers.push([]);
        groupUsed.push(0);
      }
      groupOf[operation] = group;
      (groupMembers[group] as number[]).push(operation);
    }
  }

  const linearized = new Uint8Array(Math.ceil(count / 8));
  const linearizedKey = (): string => Buffer.from(linearized.buffer, linearized.byteOffset, linearized.byteLength).toString('latin1');
  const seen = new Set<string>();
  const stackNodes: number[] = [];
  const stackStates: State[] = [];
  let state: State = null;
  let completedLeft = operations.filter((entry) => entry.completeMs !== undefined).length;
  let deepest: Deepest | undefined;
  let entry = next[0] as number;

  for (let steps = 0; completedLeft > 0; steps++) {
    if (steps > maxSteps) {
      return { key, undecided: true, explanation: `key ${JSON.stringify(key)}: undecided after ${maxSteps} search steps (${count} operations)` };
    }
    if (entry === -1) throw new Error('linearizability search ran off the list with operations left (a bug in the checker)');
    const operation = operationOf[entry] as number;
    if (isCall[entry] === 1) {
      const group = groupOf[operation] as number;
      const skip = group !== -1 && groupMembers[group]?.[groupUsed[group] as number] !== operation;
      const after: State | typeof INVALID = skip ? INVALID : step(state, operations[operation] as HistoryEntry);
      if (after !== INVALID) {
        linearized[operation >> 3] = (linearized[operation >> 3] as number) | (1 << (operation & 7));
        const configuration = `${linearizedKey()}\u0002${stateKey(after)}`;
        if (!seen.has(configuration)) {
          seen.add(configuration);
          stackNodes.push(entry);
          stackStates.push(state);
          state = after;
          lift(entry);
          if (group !== -1) groupUsed[group] = (groupUsed[group] as number) + 1;
          else completedLeft--;
          entry = next[0] as number;
          continue;
        }
        linearized[operation >> 3] = (linearized[operation >> 3] as number) & ~(1 << (operation & 7));
      }
      entry = next[entry] as number;
      continue;
    }
    // The return of an operation not linearized yet: every order tried from here fails.
    if (deepest === undefined || stackNodes.length > deepest.depth) {
      const candidates: number[] = [];
      for (let node = next[0] as number; node !== entry && node !== -1 && candidates.length < EXPLANATION_OPERATIONS_MAX; node = next[node] as number) {
        if (isCall[node] === 1) candidates.push(operationOf[node] as number);
      }
      deepest = {
        depth: stackNodes.length,
        state,
        blocked: operation,
        candidates,
        lastLinearized: stackNodes.slice(-3).map((node) => operationOf[node] as number),
      };
    }
    const callNode = stackNodes.pop();
    if (callNode === undefined) break;
    state = stackStates.pop() as State;
    const undone = operationOf[callNode] as number;
    linearized[undone >> 3] = (linearized[undone >> 3] as number) & ~(1 << (undone & 7));
    unlift(callNode);
    const undoneGroup = groupOf[undone] as number;
    if (undoneGroup !== -1) groupUsed[undoneGroup] = (groupUsed[undoneGroup] as number) - 1;
    else completedLeft++;
    entry = next[callNode] as number;
  }
  if (completedLeft === 0) return undefined;
  return { key, undecided: false, explanation: explain(key, operations, deepest) };
}

function explain(key: string, operations: HistoryEntry[], deepest: Deepest | undefined): string {
  const describe = (operation: number): string => describeEntry(operations[operation] as HistoryEntry);
  if (deepest === undefined) return `key ${JSON.stringify(key)}: not linearizable`;
  const lines = [
    `key ${JSON.stringify(key)}: not linearizable. At best ${deepest.depth} of ${operations.length} operations linearize, the value then ${describeState(deepest.state)}, and then nothing that may come next fits before this one completes:`,
    `  ${describe(deepest.blocked)}`,
  ];
  const others = deepest.candidates.filter((operation) => operation !== deepest.blocked);
  if (others.length > 0) lines.push('  the operations that could come next:', ...others.map((operation) => `    ${describe(operation)}`));
  if (deepest.lastLinearized.length > 0) {
    lines.push('  the last operations linearized:', ...deepest.lastLinearized.map((operation) => `    ${describe(operation)}`));
  }
  return lines.join('\n');
}

// Checks `history` key by key; see the module comment for what an entry must say.
export function checkLinearizable(history: readonly HistoryEntry[], options: CheckOptions = {}): LinearizabilityResult {
  const maxSteps = options.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  const byKey = new Map<string, HistoryEntry[]>();
  for (const entry of history) {
    validate(entry);
    const list = byKey.get(entry.key);
    if (list === undefined) byKey.set(entry.key, [entry]);
    else list.push(entry);
  }
  const failures: KeyFailure[] = [];
  let operationsChecked = 0;
  for (const [key, entries] of byKey) {
    const operations = reduce(entries);
    operationsChecked += operations.length;
    const failure = checkKey(key, operations, maxSteps);
    if (failure !== undefined) failures.push(failure);
  }
  const result: LinearizabilityResult = { ok: failures.length === 0, keysChecked: byKey.size, operationsChecked, failures };
  if (failures.length > 0) result.explanation = failures.map((failure) => failure.explanation).join('\n');
  return result;
}
