// The linearizability checker on hand-built histories (ones that must pass and ones that
// must fail, with definite and unknown outcomes) and on large generated ones.
import { expect } from 'chai';

import { checkLinearizable, type HistoryEntry } from './linearizability.js';

// Builders; times in ms. `completeMs` undefined: the outcome is unknown.
const set = (client: number, key: string, value: string, invokeMs: number, completeMs: number | undefined): HistoryEntry => ({
  client,
  key,
  kind: 'set',
  input: value,
  invokeMs,
  completeMs,
});
const get = (client: number, key: string, output: string | null, invokeMs: number, completeMs: number): HistoryEntry => ({
  client,
  key,
  kind: 'get',
  output,
  invokeMs,
  completeMs,
});
const unknownGet = (client: number, key: string, invokeMs: number): HistoryEntry => ({
  client,
  key,
  kind: 'get',
  output: undefined,
  invokeMs,
  completeMs: undefined,
});
const incr = (client: number, key: string, output: number | undefined, invokeMs: number, completeMs: number | undefined): HistoryEntry => ({
  client,
  key,
  kind: 'incr',
  output,
  invokeMs,
  completeMs,
});

function expectLinearizable(history: HistoryEntry[]): void {
  const result = checkLinearizable(history);
  expect(result.ok, result.explanation).to.equal(true);
  expect(result.failures).to.deep.equal([]);
}

function expectViolation(history: HistoryEntry[], key = 'k'): string {
  const result = checkLinearizable(history);
  expect(result.ok, 'expected a violation').to.equal(false);
  expect(result.failures.map((failure) => [failure.key, failure.undecided])).to.deep.equal([[key, false]]);
  expect(result.explanation).to.be.a('string').and.include(JSON.stringify(key));
  return result.explanation as string;
}

// A small deterministic generator (mulberry32), so a failure replays.
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// A history that is linearizable by construction: `clients` sequential clients, each
// operation taking effect at a random instant inside its interval, applied in that order
// to per-key Redis strings; a fraction of the operations end with an unknown outcome
// (half of those took effect, half never did).
function generatedHistory(seed: number, clients: number, operationsPerClient: number, keys: string[], unknownFraction: number): HistoryEntry[] {
  const next = random(seed);
  interface Planned {
    entry: HistoryEntry;
    pointMs: number;
    applies: boolean;
  }
  const planned: Planned[] = [];
  for (let client = 0; client < clients; client++) {
    let nowMs = next();
    for (let n = 0; n < operationsPerClient; n++) {
      const key = keys[Math.floor(next() * keys.length)] as string;
      const invokeMs = nowMs + next() * 0.5;
      const pointMs = invokeMs + next() * 2;
      const completeMs = pointMs + next() * 2;
      const unknown = next() < unknownFraction;
      const roll = next();
      // Counters (keys starting with "counter") get INCR and GET; the others SET and GET.
      const kind = key.startsWith('counter') ? (roll < 0.6 ? 'incr' : 'get') : roll < 0.5 ? 'set' : 'get';
      const common = { client, key, invokeMs, completeMs: unknown ? undefined : completeMs };
      const entry: HistoryEntry =
        kind === 'set'
          ? { ...common, kind, input: `c${client}-${n}` }
          : kind === 'get'
            ? { ...common, kind, output: undefined }
            : { ...common, kind, output: undefined };
      planned.push({ entry, pointMs, applies: !unknown || next() < 0.5 });
      nowMs = completeMs;
    }
  }
  const values = new Map<string, string | null>();
  for (const { entry, applies } of [...planned].sort((a, b) => a.pointMs - b.pointMs)) {
    if (!applies) continue;
    const value = values.get(entry.key) ?? null;
    if (entry.kind === 'set') values.set(entry.key, entry.input);
    if (entry.kind === 'get' && entry.completeMs !== undefined) entry.output = value;
    if (entry.kind === 'incr') {
      const counted = (value === null ? 0 : Number(value)) + 1;
      values.set(entry.key, String(counted));
      if (entry.completeMs !== undefined) entry.output = counted;
    }
  }
  return planned.map(({ entry }) => entry);
}

describe('linearizability checker', () => {
  describe('histories that must pass', () => {
    it('an empty history, and a sequential one', () => {
      expectLinearizable([]);
      expectLinearizable([get(1, 'k', null, 0, 1), set(1, 'k', 'a', 2, 3), get(1, 'k', 'a', 4, 5), set(2, 'k', 'b', 6, 7), get(1, 'k', 'b', 8, 9)]);
    });

    it('a read concurrent with a write may return the old or the new value', () => {
      expectLinearizable([set(1, 'k', 'a', 0, 1), set(1, 'k', 'b', 2, 10), get(2, 'k', 'a', 3, 4), get(2, 'k', 'b', 5, 6), get(3, 'k', 'b', 11, 12)]);
      // A read that completes before the write is invoked cannot see it, but one that
      // overlaps may, even when the write's other readers saw nothing yet.
      expectLinearizable([set(1, 'k', 'a', 5, 10), get(2, 'k', 'a', 6, 7), get(3, 'k', null, 4, 8)]);
    });

    it('touching operations (one completes when the next is invoked) count as concurrent', () => {
      expectLinearizable([set(1, 'k', 'a', 0, 5), get(2, 'k', null, 5, 6)]);
    });

    it('concurrent INCRs return 1, 2, 3 in any order of completion', () => {
      expectLinearizable([incr(1, 'c', 3, 0, 10), incr(2, 'c', 1, 1, 4), incr(3, 'c', 2, 2, 5), get(1, 'c', '3', 11, 12)]);
    });

    it('INCR counts from a value a SET wrote', () => {
      expectLinearizable([set(1, 'c', '41', 0, 1), incr(2, 'c', 42, 2, 3), get(1, 'c', '42', 4, 5)]);
    });

    it('keys are checked independently', () => {
      expectLinearizable([set(1, 'x', 'a', 0, 10), set(2, 'y', 'b', 0, 10), get(3, 'x', 'a', 1, 2), get(3, 'y', null, 3, 4), get(3, 'y', 'b', 11, 12)]);
    });
  });

  describe('histories that must fail', () => {
    it('a stale read after a completed write', () => {
      const explanation = expectViolation([set(1, 'k', 'a', 0, 1), set(1, 'k', 'b', 2, 3), get(2, 'k', 'a', 4, 5)]);
      // The explanation names the read that cannot fit and the value it should have seen.
      expect(explanation).to.include('GET -> "a"').and.include('"b"');
    });

    it('two INCRs returning the same value', () => {
      const explanation = expectViolation([incr(1, 'k', 1, 0, 5), incr(2, 'k', 1, 1, 6)]);
      expect(explanation).to.include('INCR -> 1');
    });

    it('a read of a value never written', () => {
      expectViolation([set(1, 'k', 'a', 0, 1), get(2, 'k', 'zzz', 0, 3)]);
    });

    it('a lost acknowledged write (a register and a counter)', () => {
      expectViolation([set(1, 'k', 'a', 0, 1), get(2, 'k', null, 2, 3)]);
      expectViolation([incr(1, 'k', 1, 0, 1), incr(2, 'k', 2, 1, 3), incr(1, 'k', 3, 2, 4), get(3, 'k', '2', 5, 6)]);
    });

    it('a new value, then the old one, read after each other while the write is still in flight', () => {
      expectViolation([set(1, 'k', 'old', 0, 1), set(1, 'k', 'new', 2, 20), get(2, 'k', 'new', 3, 4), get(3, 'k', 'old', 5, 6)]);
    });

    it('only the failing key is reported', () => {
      const result = checkLinearizable([set(1, 'good', 'a', 0, 1), get(2, 'good', 'a', 2, 3), set(1, 'bad', 'a', 0, 1), get(2, 'bad', null, 2, 3)]);
      expect(result.ok).to.equal(false);
      expect(result.keysChecked).to.equal(2);
      expect(result.failures.map((failure) => failure.key)).to.deep.equal(['bad']);
    });

    it('refuses a malformed history instead of judging it', () => {
      expect(() => checkLinearizable([set(1, 'k', 'a', 5, 4)])).to.throw(/completes before it is invoked/);
      expect(() => checkLinearizable([{ client: 1, key: 'k', kind: 'get', output: undefined, invokeMs: 0, completeMs: 1 }])).to.throw(/needs its output/);
    });
  });

  describe('operations with an unknown outcome', () => {
    it('an unknown SET may have taken effect, or not, and that can show late', () => {
      // Never seen: fine.
      expectLinearizable([set(1, 'k', 'a', 0, 1), set(2, 'k', 'b', 2, undefined), get(3, 'k', 'a', 10, 11)]);
      // Seen at once, or only long after the client gave up on it.
      expectLinearizable([set(1, 'k', 'a', 0, 1), set(2, 'k', 'b', 2, undefined), get(3, 'k', 'b', 3, 4)]);
      expectLinearizable([set(1, 'k', 'a', 0, 1), set(2, 'k', 'b', 2, undefined), get(3, 'k', 'a', 10, 11), get(3, 'k', 'b', 100, 101)]);
    });

    it('an unknown SET cannot be seen, then unseen', () => {
      expectViolation([set(1, 'k', 'a', 0, 1), set(2, 'k', 'b', 2, undefined), get(3, 'k', 'b', 3, 4), get(3, 'k', 'a', 5, 6)]);
    });

    it('an unknown SET cannot take effect before it is invoked', () => {
      expectViolation([get(3, 'k', 'b', 0, 1), set(2, 'k', 'b', 2, undefined)]);
    });

    it('an unknown SET of an integer can be what an INCR counted from', () => {
      expectLinearizable([set(1, 'c', '5', 0, undefined), incr(2, 'c', 6, 1, 2)]);
      expectLinearizable([set(1, 'c', '5', 0, undefined), incr(2, 'c', 1, 1, 2)]);
    });

    it('unknown INCRs count or not, each at most once', () => {
      const base = [incr(1, 'c', 1, 0, 1), incr(2, 'c', undefined, 2, undefined), incr(3, 'c', undefined, 3, undefined)];
      expectLinearizable([...base, get(4, 'c', '1', 10, 11)]);
      expectLinearizable([...base, get(4, 'c', '2', 10, 11)]);
      expectLinearizable([...base, get(4, 'c', '3', 10, 11)]);
      expectViolation([...base, get(4, 'c', '4', 10, 11)], 'c');
      // An acknowledged INCR after the unknown ones returns what they added up to.
      expectLinearizable([...base, incr(4, 'c', 3, 10, 11)]);
      expectViolation([...base, incr(4, 'c', 5, 10, 11)], 'c');
    });

    it('an unknown INCR may take effect long after it was invoked', () => {
      expectLinearizable([incr(1, 'c', undefined, 0, undefined), incr(2, 'c', 1, 1, 2), get(3, 'c', '1', 3, 4), get(3, 'c', '2', 5, 6)]);
    });

    it('unknown GETs are ignored, whatever they might have returned', () => {
      expectLinearizable([set(1, 'k', 'a', 0, 1), unknownGet(2, 'k', 2), get(3, 'k', 'a', 3, 4)]);
    });

    it('many unknown INCRs: decided at once, both ways', () => {
      const unknown = Array.from({ length: 60 }, (_, i) => incr(i + 10, 'c', undefined, i, undefined));
      const started = performance.now();
      expectLinearizable([...unknown, incr(1, 'c', 1, 0, 1000), get(2, 'c', '40', 2000, 2001)]);
      expectViolation([...unknown, incr(1, 'c', 1, 0, 1000), get(2, 'c', '62', 2000, 2001)], 'c');
      expect(performance.now() - started).to.be.below(2000);
    });
  });

  describe('generated histories', () => {
    const keys = ['register:0', 'register:1', 'counter:0'];

    it('3 keys, 6 clients, about 3000 operations per key: linearizable, and checked quickly', () => {
      for (const seed of [1, 2, 3]) {
        const history = generatedHistory(seed, 6, 1500, keys, 0.02);
        const started = performance.now();
        const result = checkLinearizable(history);
        const elapsedMs = performance.now() - started;
        expect(result.ok, `seed ${seed}: ${result.explanation}`).to.equal(true);
        expect(result.keysChecked).to.equal(3);
        expect(result.operationsChecked).to.be.above(8000);
        expect(elapsedMs, `seed ${seed}`).to.be.below(5000);
      }
    });

    it('the same histories with one read made stale, or of a value never written: fails on that key', () => {
      for (const seed of [1, 2, 3]) {
        const history = generatedHistory(seed, 6, 1500, keys, 0.02);
        const sets = history.filter((entry): entry is HistoryEntry & { kind: 'set' } => entry.kind === 'set' && entry.key === 'register:1' && entry.completeMs !== undefined);
        // A read that began after `newer` completed, which began after `older` completed,
        // cannot return `older`'s value (values are unique).
        const older = sets[Math.floor(sets.length / 2)] as HistoryEntry & { kind: 'set' };
        const newer = sets.find((entry) => entry.invokeMs > (older.completeMs as number)) as HistoryEntry;
        const read = history.find(
          (entry): entry is HistoryEntry & { kind: 'get' } =>
            entry.kind === 'get' && entry.key === 'register:1' && entry.completeMs !== undefined && entry.invokeMs > (newer.completeMs as number),
        );
        expect(read).to.not.equal(undefined);
        const stale = history.map((entry) => (entry === read ? { ...read, output: older.input } : entry));
        const result = checkLinearizable(stale);
        expect(result.ok, `seed ${seed}`).to.equal(false);
        expect(result.failures.map((failure) => [failure.key, failure.undecided])).to.deep.equal([['register:1', false]]);

        const counterRead = history.find(
          (entry): entry is HistoryEntry & { kind: 'get' } => entry.kind === 'get' && entry.key === 'counter:0' && entry.completeMs !== undefined && entry.invokeMs > 1000,
        );
        expect(counterRead).to.not.equal(undefined);
        const neverWritten = history.map((entry) => (entry === counterRead ? { ...counterRead, output: '999999' } : entry));
        const second = checkLinearizable(neverWritten);
        expect(second.failures.map((failure) => [failure.key, failure.undecided]), `seed ${seed}`).to.deep.equal([['counter:0', false]]);
      }
    });

    it('gives up undecided when the search exceeds its budget, and says so', () => {
      const history = generatedHistory(4, 6, 300, ['register:0'], 0);
      const result = checkLinearizable(history, { maxStepsPerKey: 10 });
      expect(result.ok).to.equal(false);
      expect(result.failures[0]?.undecided).to.equal(true);
      expect(result.explanation).to.include('undecided');
    });
  });
});
