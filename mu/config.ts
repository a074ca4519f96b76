// The cluster configuration file (JSON) and its validation. Every problem is reported with
// its path in the file (`replicas[2].control: ...`), unknown fields included, so a typo
// fails at start-up instead of silently taking a default. Defaults suit a deployment: the
// engine's timing defaults, and a 64 MiB log (engineDefaults below).
//
// {
//   "cluster": "orders",                       // names shm regions and the control plane
//   "secretFile": "/run/secrets/mu",           // or "secret": "...", or $MU_CLUSTER_SECRET
//   "fabric": { "backend": "shm" }             // or { "backend": "verbs", "device": "mlx5_0",
//                                              //      "port": 1, "gidIndex": 3 }
//   "replicas": [ { "id": 0, "control": "10.0.0.1:7400" }, ... ],
//   "engine": { "logBytes": 67108864, "maxEntryBytes": 1048576, "pipelineDepth": 8,
//               "idleStrategy": "backoff",
//               "failureDetector": { "readIntervalUs": 100, "heartbeatIntervalUs": 20,
//                                    "failureReads": 6 } }
// }
import fs from 'node:fs';
import net from 'node:net';

import type { NativeReplicaOptions } from './native.js';

export interface ReplicaAddress {
  id: number;
  host: string;
  port: number;
}

export interface FailureDetectorConfig {
  readIntervalUs: number; // how often each peer's heartbeat is read
  heartbeatIntervalUs: number; // how often this replica bumps its own
  failureReads: number; // reads without progress before a peer is suspected
}

export interface EngineConfig {
  logBytes: number;
  maxEntryBytes: number;
  pipelineDepth: number;
  idleStrategy: 'backoff' | 'yield' | 'spin';
  failureDetector: FailureDetectorConfig;
  // A live peer (its control plane answers) not reached over the fabric for this long gets
  // a paired reset of the link (mu/link_resets.ts); 0: never started here (answered still).
  linkResetMs: number;
  // verbs only, the last resort: a replica that sees no majority over RDMA for this long
  // while its control plane reaches a majority restarts (member.ts, "wedged links"); 0: never.
  wedgedLinkRestartMs: number;
  // A command in flight when this replica's reign ended, whose fate it has not learned
  // this long after (it cannot reach the next leader's log: a partition), settles as
  // UNKNOWN (mu/replica.ts); 0: it waits until the fate is known.
  unknownOutcomeMs: number;
}

export type FabricConfig =
  | { backend: 'shm'; shmRoot: string }
  | { backend: 'verbs'; device: string; port: number; gidIndex: number };

export interface ClusterConfig {
  cluster: string;
  secret: Buffer;
  fabric: FabricConfig;
  replicas: ReplicaAddress[]; // sorted by id, ids 0..n-1
  engine: EngineConfig;
}

export class ConfigError extends Error {
  constructor(problems: string[]) {
    super(`invalid cluster configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

// The engine's own defaults (native/engine): a detector that notices a stopped leader in
// about 0.6 ms, which needs dedicated cores; see docs/PERFORMANCE.md for shared hosts.
export const engineDefaults: EngineConfig = {
  logBytes: 64 << 20,
  // The engine's largest entry (native/engine/log_entry.hpp): a command, or a whole
  // MULTI/EXEC, must fit in one.
  maxEntryBytes: 1 << 20,
  pipelineDepth: 8,
  idleStrategy: 'backoff',
  failureDetector: { readIntervalUs: 100, heartbeatIntervalUs: 20, failureReads: 6 },
  linkResetMs: 3000,
  wedgedLinkRestartMs: 30_000,
  unknownOutcomeMs: 5000,
};

export const minSecretBytes = 16;
const maxReplicas = 16;
// The engine's limits on what nativeReplicaOptions derives (native/addon/replica_binding.cpp):
// maxScore <= 1000, candidateTimeoutUs <= 60 s, candidateBackoffUs <= 60 s and
// fateSharingTimeoutUs <= 600 s; with the timers at 3, 1 and 10 windows, a window of 20 s.
const maxNativeScore = 1000;
const maxDetectionWindowUs = 20_000_000;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// Collects every problem of a document with its path; layers above reuse it for their
// own sections of the same file.
export class Checker {
  readonly problems: string[] = [];

  fail(path: string, problem: string): undefined {
    this.problems.push(`${path}: ${problem}`);
    return undefined;
  }

  // `prefix` starts the paths of the object's fields: the root's fields are bare (`cluster`).
  object(
    value: Json | undefined,
    path: string,
    known: readonly string[],
    prefix = `${path}.`,
  ): Record<string, Json> | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return this.fail(path, 'must be an object');
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) this.fail(`${prefix}${key}`, `unknown field (known: ${known.join(', ')})`);
    }
    return value;
  }

  string(value: Json | undefined, path: string, pattern?: RegExp, describe?: string): string | undefined {
    if (typeof value !== 'string' || value.length === 0) return this.fail(path, 'must be a non-empty string');
    if (pattern !== undefined && !pattern.test(value)) return this.fail(path, `must be ${describe ?? pattern.toString()}`);
    return value;
  }

  integer(value: Json | undefined, path: string, low: number, high: number): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value)) return this.fail(path, 'must be an integer');
    if (value < low || value > high) return this.fail(path, `must be between ${low} and ${high}, got ${value}`);
    return value;
  }
}

// A host name: dot-separated labels of letters, digits and inner hyphens, 63 bytes each,
// 253 in all; the last label not all digits, so `999.1.1.1` is no name either.
function isHostName(host: string): boolean {
  if (host.length > 253) return false;
  const labels = host.split('.');
  if (!labels.every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1] ?? '');
}

export function parseAddress(text: string): { host: string; port: number } | string {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text);
  if (match === null) return 'must be host:port (IPv6 in brackets)';
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return `port ${port} is out of range`;
  const bracketed = match[1];
  if (bracketed !== undefined) {
    if (!net.isIPv6(bracketed)) return `"[${bracketed}]" is not an IPv6 address (only IPv6 goes in brackets)`;
    return { host: bracketed, port };
  }
  const host = match[2] ?? '';
  if (net.isIP(host) === 0 && !isHostName(host)) return `"${host}" is neither an IP address nor a host name`;
  return { host, port };
}

// A secret file's bytes less the surrounding ASCII whitespace (the trailing newline an
// editor or `echo` adds). Bytes, not text: a binary secret must not pass through UTF-8.
function trimAsciiWhitespace(bytes: Buffer): Buffer {
  const blank = (byte: number | undefined) => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
  let start = 0;
  let end = bytes.length;
  while (start < end && blank(bytes[start])) start++;
  while (end > start && blank(bytes[end - 1])) end--;
  return Buffer.from(bytes.subarray(start, end));
}

// Validates a parsed JSON document. `env` supplies MU_CLUSTER_SECRET when the file names
// no secret; `readFile` reads secretFile (injected for tests).
// Fields that a layer above (the proxy) adds to the same file and checks itself: they are
// not unknown here.
export interface ConfigExtensions {
  rootFields?: readonly string[];
  replicaFields?: readonly string[];
}

export function validateClusterConfig(
  document: unknown,
  env: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => Buffer = (path) => fs.readFileSync(path),
  extensions: ConfigExtensions = {},
): ClusterConfig {
  const check = new Checker();
  const root = check.object(
    document as Json,
    'config',
    ['cluster', 'secret', 'secretFile', 'fabric', 'replicas', 'engine', ...(extensions.rootFields ?? [])],
    '',
  );
  if (root === undefined) throw new ConfigError(check.problems);

  const cluster = check.string(root['cluster'], 'cluster', /^[A-Za-z0-9._-]{1,64}$/, '1-64 letters, digits, ".", "_" or "-"');

  let secret: Buffer | undefined;
  if (root['secret'] !== undefined && root['secretFile'] !== undefined) {
    check.fail('secret', 'give secret or secretFile, not both');
  } else if (root['secretFile'] !== undefined) {
    const path = check.string(root['secretFile'], 'secretFile');
    if (path !== undefined) {
      try {
        secret = trimAsciiWhitespace(readFile(path));
      } catch (error) {
        check.fail('secretFile', `cannot read ${path}: ${(error as Error).message}`);
      }
    }
  } else if (root['secret'] !== undefined) {
    const text = check.string(root['secret'], 'secret');
    if (text !== undefined) secret = Buffer.from(text, 'utf8');
  } else if (env['MU_CLUSTER_SECRET'] !== undefined && env['MU_CLUSTER_SECRET'] !== '') {
    secret = Buffer.from(env['MU_CLUSTER_SECRET'], 'utf8');
  } else {
    check.fail('secret', 'missing: set secret, secretFile or the MU_CLUSTER_SECRET environment variable');
  }
  if (secret !== undefined && secret.length < minSecretBytes) {
    check.fail('secret', `must be at least ${minSecretBytes} bytes (got ${secret.length})`);
  }

  const fabric = validateFabric(check, root['fabric']);
  const replicas = validateReplicas(check, root['replicas'], extensions.replicaFields ?? []);
  const engine = validateEngine(check, root['engine']);

  if (check.problems.length > 0 || cluster === undefined || secret === undefined || fabric === undefined ||
      replicas === undefined || engine === undefined) {
    throw new ConfigError(check.problems);
  }
  return { cluster, secret, fabric, replicas, engine };
}

function validateFabric(check: Checker, value: Json | undefined): FabricConfig | undefined {
  if (value === undefined) return { backend: 'shm', shmRoot: '/dev/shm' };
  const fabric = check.object(value, 'fabric', ['backend', 'shmRoot', 'device', 'port', 'gidIndex']);
  if (fabric === undefined) return undefined;
  if (fabric['backend'] === 'shm') {
    for (const key of ['device', 'port', 'gidIndex']) {
      if (fabric[key] !== undefined) check.fail(`fabric.${key}`, 'applies to the verbs backend only');
    }
    const shmRoot = fabric['shmRoot'] === undefined ? '/dev/shm' : check.string(fabric['shmRoot'], 'fabric.shmRoot', /^\//, 'an absolute path');
    return shmRoot === undefined ? undefined : { backend: 'shm', shmRoot };
  }
  if (fabric['backend'] === 'verbs') {
    if (fabric['shmRoot'] !== undefined) check.fail('fabric.shmRoot', 'applies to the shm backend only');
    const device = check.string(fabric['device'], 'fabric.device', /^[A-Za-z0-9_.-]{1,64}$/, 'an RDMA device name such as mlx5_0 or rxe0');
    const port = fabric['port'] === undefined ? 1 : check.integer(fabric['port'], 'fabric.port', 1, 255);
    const gidIndex = fabric['gidIndex'] === undefined ? 1 : check.integer(fabric['gidIndex'], 'fabric.gidIndex', 0, 255);
    if (device === undefined || port === undefined || gidIndex === undefined) return undefined;
    return { backend: 'verbs', device, port, gidIndex };
  }
  return check.fail('fabric.backend', 'must be "shm" or "verbs"');
}

function validateReplicas(check: Checker, value: Json | undefined, extraFields: readonly string[]): ReplicaAddress[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return check.fail('replicas', 'must be a non-empty array');
  if (value.length > maxReplicas) return check.fail('replicas', `at most ${maxReplicas} replicas`);
  const replicas: ReplicaAddress[] = [];
  const seenIds = new Map<number, number>();
  const seenAddresses = new Map<string, number>();
  value.forEach((entry, position) => {
    const path = `replicas[${position}]`;
    const replica = check.object(entry, path, ['id', 'control', ...extraFields]);
    if (replica === undefined) return;
    // The id and the address are checked independently, so a bad one does not hide the other.
    const id = check.integer(replica['id'], `${path}.id`, 0, value.length - 1);
    if (id !== undefined) {
      const earlier = seenIds.get(id);
      if (earlier !== undefined) check.fail(`${path}.id`, `duplicate id ${id} (also replicas[${earlier}])`);
      else seenIds.set(id, position);
    }
    const control = check.string(replica['control'], `${path}.control`);
    let address: { host: string; port: number } | string | undefined = control === undefined ? undefined : parseAddress(control);
    if (typeof address === 'string') {
      check.fail(`${path}.control`, address);
      address = undefined;
    } else if (address !== undefined) {
      // Host names and IPv6 hex digits are case-insensitive.
      const key = `${address.host.toLowerCase()}:${address.port}`;
      const sharing = seenAddresses.get(key);
      if (sharing !== undefined) check.fail(`${path}.control`, `${control} is also replicas[${sharing}]'s address`);
      else seenAddresses.set(key, position);
    }
    if (id !== undefined && address !== undefined) replicas.push({ id, ...address });
  });
  if (replicas.length !== value.length) return undefined;
  return replicas.sort((a, b) => a.id - b.id);
}

function validateEngine(check: Checker, value: Json | undefined): EngineConfig | undefined {
  // Copies: the returned config must not share (mutable) objects with engineDefaults.
  if (value === undefined) return { ...engineDefaults, failureDetector: { ...engineDefaults.failureDetector } };
  const engine = check.object(value, 'engine', ['logBytes', 'maxEntryBytes', 'pipelineDepth', 'idleStrategy', 'failureDetector', 'linkResetMs', 'wedgedLinkRestartMs', 'unknownOutcomeMs']);
  if (engine === undefined) return undefined;
  const pick = (key: string, fallback: number, low: number, high: number) =>
    engine[key] === undefined ? fallback : check.integer(engine[key], `engine.${key}`, low, high);
  const logBytes = pick('logBytes', engineDefaults.logBytes, 64 << 10, 2 ** 36);
  const maxEntryBytes = pick('maxEntryBytes', engineDefaults.maxEntryBytes, 256, 1 << 20);
  const pipelineDepth = pick('pipelineDepth', engineDefaults.pipelineDepth, 1, 256);
  const linkResetMs = pick('linkResetMs', engineDefaults.linkResetMs, 0, 3_600_000);
  const wedgedLinkRestartMs = pick('wedgedLinkRestartMs', engineDefaults.wedgedLinkRestartMs, 0, 3_600_000);
  const unknownOutcomeMs = pick('unknownOutcomeMs', engineDefaults.unknownOutcomeMs, 0, 3_600_000);
  let idleStrategy = engineDefaults.idleStrategy;
  if (engine['idleStrategy'] !== undefined) {
    const named = engine['idleStrategy'];
    if (named === 'backoff' || named === 'yield' || named === 'spin') idleStrategy = named;
    else check.fail('engine.idleStrategy', 'must be "backoff", "yield" or "spin"');
  }
  if (logBytes !== undefined && maxEntryBytes !== undefined && logBytes < 4 * maxEntryBytes) {
    check.fail('engine.logBytes', `must hold at least four of the largest entries (4 x ${maxEntryBytes} bytes)`);
  }
  const failureDetector = validateDetector(check, engine['failureDetector']);
  if (logBytes === undefined || maxEntryBytes === undefined || pipelineDepth === undefined || failureDetector === undefined || linkResetMs === undefined || wedgedLinkRestartMs === undefined || unknownOutcomeMs === undefined) {
    return undefined;
  }
  return { logBytes, maxEntryBytes, pipelineDepth, idleStrategy, failureDetector, linkResetMs, wedgedLinkRestartMs, unknownOutcomeMs };
}

function validateDetector(check: Checker, value: Json | undefined): FailureDetectorConfig | undefined {
  const defaults = engineDefaults.failureDetector;
  if (value === undefined) return { ...defaults };
  const detector = check.object(value, 'engine.failureDetector', ['readIntervalUs', 'heartbeatIntervalUs', 'failureReads']);
  if (detector === undefined) return undefined;
  const pick = (key: string, fallback: number, low: number, high: number) =>
    detector[key] === undefined ? fallback : check.integer(detector[key], `engine.failureDetector.${key}`, low, high);
  const readIntervalUs = pick('readIntervalUs', defaults.readIntervalUs, 10, 10_000_000);
  const heartbeatIntervalUs = pick('heartbeatIntervalUs', Math.max(1, Math.floor((readIntervalUs ?? 100) / 5)), 1, 10_000_000);
  // nativeReplicaOptions sets maxScore = failureReads + 2, and the engine takes maxScore <= 1000.
  const failureReads = pick('failureReads', defaults.failureReads, 2, maxNativeScore - 2);
  if (readIntervalUs === undefined || heartbeatIntervalUs === undefined || failureReads === undefined) return undefined;
  if (heartbeatIntervalUs >= readIntervalUs) {
    check.fail('engine.failureDetector.heartbeatIntervalUs', `must be shorter than readIntervalUs (${readIntervalUs})`);
    return undefined;
  }
  // The election timers scale with the window (nativeReplicaOptions) and must stay within
  // the engine's limits: the candidate timeout, 3 windows, at most 60 s.
  const windowUs = readIntervalUs * failureReads;
  if (windowUs > maxDetectionWindowUs) {
    check.fail(
      'engine.failureDetector',
      `the detection window readIntervalUs x failureReads (${windowUs} us) must be at most ${maxDetectionWindowUs} us`,
    );
    return undefined;
  }
  return { readIntervalUs, heartbeatIntervalUs, failureReads };
}

// Reads and parses a configuration file; ConfigError names the file and the problem.
export function readConfigDocument(path: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read ${path}: ${(error as Error).message}`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`${path} is not valid JSON: ${(error as Error).message}`]);
  }
}

export function loadClusterConfig(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  extensions: ConfigExtensions = {},
): ClusterConfig {
  return validateClusterConfig(readConfigDocument(path), env, undefined, extensions);
}

// The native Replica's options for replica `nodeId` of this cluster. The detector's
// score is sized so that `failureReads` reads without progress suspect a peer, and a
// suspected peer must then show progress in most of the window again to be trusted.
export function nativeReplicaOptions(config: ClusterConfig, nodeId: number): NativeReplicaOptions {
  const detector = config.engine.failureDetector;
  const maxScore = detector.failureReads + 2;
  const options: NativeReplicaOptions = {
    nodeId,
    replicaCount: config.replicas.length,
    fabric: config.fabric.backend,
    clusterName: config.cluster,
    logBytes: config.engine.logBytes,
    maxEntryBytes: config.engine.maxEntryBytes,
    pipelineDepth: config.engine.pipelineDepth,
    idleStrategy: config.engine.idleStrategy,
    readIntervalUs: detector.readIntervalUs,
    heartbeatIntervalUs: detector.heartbeatIntervalUs,
    maxScore,
    failureThreshold: 2,
    recoveryThreshold: Math.max(3, Math.floor((maxScore * 3) / 4)),
    // Election and fate-sharing timers scale with the detection window, or a slow
    // detector would give up on candidates before it could confirm anything.
    candidateTimeoutUs: Math.max(2000, detector.readIntervalUs * detector.failureReads * 3),
    candidateBackoffUs: Math.max(500, detector.readIntervalUs * detector.failureReads),
    fateSharingTimeoutUs: Math.max(10_000, detector.readIntervalUs * detector.failureReads * 10),
  };
  if (config.fabric.backend === 'shm') {
    options.shmRoot = config.fabric.shmRoot;
  } else {
    options.verbsDevice = config.fabric.device;
    options.verbsPort = config.fabric.port;
    options.verbsGidIndex = config.fabric.gidIndex;
  }
  return options;
}
