// Loads the native addon built by `npm install` (cmake-js, build/Release/mu_native.node).
// Every TypeScript layer reaches native code through this module only.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export type FabricBackendName = 'shm' | 'verbs';

// The options the native Replica takes (checked again there); mu/config.ts builds them.
export interface NativeReplicaOptions {
  nodeId: number;
  replicaCount: number;
  fabric: FabricBackendName;
  clusterName: string;
  shmRoot?: string;
  verbsDevice?: string;
  verbsPort?: number;
  verbsGidIndex?: number;
  logBytes?: number;
  maxEntryBytes?: number;
  pipelineDepth?: number;
  maxPendingCommands?: number;
  commitPublishDelayUs?: number;
  heartbeatIntervalUs?: number;
  readIntervalUs?: number;
  maxScore?: number;
  failureThreshold?: number;
  recoveryThreshold?: number;
  candidateTimeoutUs?: number;
  candidateBackoffUs?: number;
  fateSharingTimeoutUs?: number;
  idleStrategy?: 'backoff' | 'yield' | 'spin';
}

export type NativeRole = 'follower' | 'recovering' | 'preparing' | 'leader' | 'deposed';

export interface NativeReplicaStatus {
  running: boolean;
  role: NativeRole;
  candidacy: 'idle' | 'requesting' | 'leading';
  holder: number | null;
  proposal: number;
  firstUncommittedIndex: number;
  firstUndecidedIndex: number;
  appliedIndex: number;
  heartbeat: number;
  grantsServed: number;
  peerScores: number[];
  peerAlive: boolean[];
  needsStateTransfer: boolean;
  rounds: number;
  idleRounds: number;
  entriesApplied: number;
  commandsDropped: number;
  reignsEnded: number;
  leaderDetail: string;
  backgroundDetail: string;
}

// native/addon/replica_binding.hpp. Event records arrive as one Buffer per delivery:
// each record is a 4-byte length, then a 24-byte header (kind, detail, value, extra) and,
// for applied entries, the entry's command batch (see mu/events.ts).
export interface NativeReplica {
  card(): Buffer;
  // cards[i]: replica i's card, or null while it has not come (a majority must be there).
  connect(cards: Array<Buffer | null>): void;
  // A peer restarted: its new card (applied on the engine thread; a peer-reconnected event follows).
  reconnectPeer(card: Buffer, hold?: boolean): number;
  releaseLink(peer: number): number;
  requestStateTransfer(): void;
  resumeFromStateTransfer(nextIndex: number, position: number): void;
  start(onEvents: (records: Buffer) => void): void;
  // Returns [first sequence, how many were taken]; the rest did not fit (backpressure).
  submit(commands: Buffer[]): [number, number];
  // Spins up to spinUs for event records (the callback's format) and returns them.
  poll(spinUs: number): Buffer | undefined;
  status(): NativeReplicaStatus;
  stop(): void;
  maxCommandBytes(): number;
}

export interface NativeAddon {
  compiledFabricBackends(): FabricBackendName[];
  Replica: new (options: NativeReplicaOptions) => NativeReplica;
}

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(repositoryRoot, 'build', 'Release', 'mu_native.node');

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(addonPath) as NativeAddon;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot load the native addon at ${addonPath} (run \`npm install\` to build it): ${reason}`);
  }
}

export const native: NativeAddon = loadAddon();
