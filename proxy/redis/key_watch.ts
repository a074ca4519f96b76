// Who wants to hear that a key changed: WATCH (a transaction aborts when a watched key was
// written after the WATCH) and the blocking pops (a blocked client tries again when one of
// its keys was written). Redis learns this inside the server; the proxy learns it from the
// one place every write passes on every replica: the apply stream. Each applied command's
// keys come from the command table, so a key counts as written when the write reached this
// replica's backend, in log order, whoever proposed it.
//
// Nothing is decoded while nobody watches: the apply stream asks `active` first.
//
// Where the keys are not known exactly, every watcher hears it (an abort or a retry too
// many is harmless; a missed one is not): writes without key arguments (FLUSHDB,
// FLUSHALL, SWAPDB), writes naming another database (MOVE, COPY ... DB), and scripts and
// functions (they may touch keys they did not declare).
import { decodeCommand } from '../../adapters/redis/resp.js';
import type { CommandTable } from './command_table.js';

export interface KeyWatcher {
  // A watched key was written (or may have been), by the log command this replica
  // proposed as `ownRequestId` (undefined: another replica's, or one not known). Called
  // synchronously from the apply stream; must not throw.
  touched(ownRequestId: number | undefined): void;
}

const everywhere = new Set(['flushall', 'swapdb', 'move', 'copy']);
const scriptsThatWrite = new Set(['eval', 'evalsha', 'fcall']);
const writeClasses = new Set(['write', 'write-rewrite', 'write-effects']);

export class KeyWatchRegistry {
  private readonly byKey = new Map<string, Set<KeyWatcher>>();
  private readonly keysOf = new Map<KeyWatcher, string[]>();

  constructor(private readonly table: CommandTable) {}

  get active(): boolean {
    return this.keysOf.size > 0;
  }

  watch(watcher: KeyWatcher, db: number, keys: ReadonlyArray<Buffer>): void {
    let list = this.keysOf.get(watcher);
    if (list === undefined) {
      list = [];
      this.keysOf.set(watcher, list);
    }
    for (const key of keys) {
      const id = keyId(db, key);
      let watchers = this.byKey.get(id);
      if (watchers === undefined) {
        watchers = new Set();
        this.byKey.set(id, watchers);
      }
      if (!watchers.has(watcher)) {
        watchers.add(watcher);
        list.push(id);
      }
    }
  }

  unwatch(watcher: KeyWatcher): void {
    const list = this.keysOf.get(watcher);
    if (list === undefined) return;
    this.keysOf.delete(watcher);
    for (const id of list) {
      const watchers = this.byKey.get(id);
      watchers?.delete(watcher);
      if (watchers?.size === 0) this.byKey.delete(id);
    }
  }

  // One command applied to the backend in database `db` (`encoded` as encodeCommand
  // wrote it). Reads touch nothing.
  applied(db: number, encoded: Buffer, ownRequestId: number | undefined): void {
    if (!this.active) return;
    const argv = decodeCommand(encoded);
    const found = this.table.lookup(argv);
    if (found === undefined) return; // the backend refused it: nothing changed
    if (found.class === 'script') {
      if (scriptsThatWrite.has(found.info.name)) this.touchAll(ownRequestId);
      return;
    }
    // A blocking pop in the log is one that was served (a try inside MULTI): its keys.
    if (found.class === 'blocking') {
      this.touch(db, this.table.keys(argv), ownRequestId);
      return;
    }
    if (!writeClasses.has(found.class)) return;
    const keys = this.table.keys(argv);
    if (keys.length === 0 || everywhere.has(found.info.name)) {
      this.touchAll(ownRequestId);
      return;
    }
    this.touch(db, keys, ownRequestId);
  }

  private touch(db: number, keys: ReadonlyArray<Buffer>, ownRequestId: number | undefined): void {
    const touched = new Set<KeyWatcher>();
    for (const key of keys) for (const watcher of this.byKey.get(keyId(db, key)) ?? []) touched.add(watcher);
    for (const watcher of touched) watcher.touched(ownRequestId);
  }

  // Every watcher: a write whose keys are not known, or a backend whose state was replaced
  // outside the apply stream (state transfer).
  touchAll(ownRequestId: number | undefined): void {
    for (const watcher of [...this.keysOf.keys()]) watcher.touched(ownRequestId);
  }
}

function keyId(db: number, key: Buffer): string {
  return `${db}:${key.toString('latin1')}`;
}
