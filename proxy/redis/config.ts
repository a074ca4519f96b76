// The front ends' part of the cluster configuration file: a "redis" section and a
// "memcached" section for options every replica shares, and per replica the address its
// clients connect to and the address of its own backend, for each front end the cluster
// has (Redis, memcached; every replica fronts the same ones).
//
//   "redis": { "readMode": "linearizable", "requirepass": "...", "maxClients": 10000, ... },
//   "memcached": { "readMode": "linearizable", "maxClients": 10000, ... },
//   "replicas": [ { "id": 0, "control": "10.0.0.1:7400",
//                   "redis": "0.0.0.0:6380", "redisBackend": "127.0.0.1:6379",
//                   "memcached": "0.0.0.0:11212", "memcachedBackend": "127.0.0.1:11211",
//                   "metrics": "0.0.0.0:9121" }, ... ]     (metrics: optional)
// A backend address may instead be an absolute Unix socket path ("/run/mu/redis.sock"):
// the backend is local to its replica, and a Unix socket is the faster way in.
import { Checker, ConfigError, parseAddress, readConfigDocument, validateClusterConfig, type ClusterConfig, type Json } from '../../mu/config.js';
import { UNIX_SOCKET_PATH_MAX_BYTES, type Endpoint } from '../../adapters/endpoint.js';
import { AccessControl } from './acl.js';
import { frontEndDefaults, type FrontEndOptions, type ReadMode } from './front_end.js';

export interface RedisReplicaAddresses {
  listen: { host: string; port: number };
  backend: Endpoint;
  metrics?: { host: string; port: number }; // Prometheus /metrics, when configured
}

export interface MemcachedOptions {
  readMode: ReadMode;
  followerRequests: 'forward' | 'redirect';
  maxClients: number;
  maxPipeline: number;
  maxOutputBytes: number;
  idleTimeoutMs: number;
}

export interface RedisProxyConfig {
  cluster: ClusterConfig;
  front: Omit<FrontEndOptions, 'host' | 'port'>;
  memcached: MemcachedOptions;
  // Per replica id, its memcached front end's addresses; empty when the cluster fronts no
  // memcached.
  memcachedReplicas: RedisReplicaAddresses[];
  users: Array<{ name: string; rules: string }>; // ACL-style users (acl.ts)
  flushBackendOnStart: boolean;
  replicas: RedisReplicaAddresses[]; // by id; empty when the cluster fronts no Redis
}

const memcachedFields = ['readMode', 'followerRequests', 'maxClients', 'maxPipeline', 'maxOutputBytes', 'idleTimeoutMs'];
const redisFields = ['readMode', 'followerRequests', 'requirepass', 'users', 'maxClients', 'maxRequestBytes', 'maxPipeline', 'maxOutputBytes', 'idleTimeoutMs', 'flushBackendOnStart'];

export function validateRedisProxyConfig(document: unknown, env: NodeJS.ProcessEnv = process.env): RedisProxyConfig {
  const cluster = validateClusterConfig(document, env, undefined, {
    rootFields: ['redis', 'memcached'],
    replicaFields: ['redis', 'redisBackend', 'memcached', 'memcachedBackend', 'metrics'],
  });
  const check = new Checker();
  const root = document as Record<string, Json>;
  const section = root['redis'] === undefined ? {} : check.object(root['redis'], 'redis', redisFields);
  const front = { ...frontEndDefaults } as Omit<FrontEndOptions, 'host' | 'port'> & { host?: string };
  delete front.host;
  let flushBackendOnStart = false;
  const users: Array<{ name: string; rules: string }> = [];
  if (section !== undefined) {
    if (section['users'] !== undefined) {
      const list = section['users'];
      if (!Array.isArray(list)) check.fail('redis.users', 'must be an array of { "name": ..., "rules": ... }');
      else {
        list.forEach((entry, i) => {
          const user = check.object(entry, `redis.users[${i}]`, ['name', 'rules']);
          if (user === undefined) return;
          const name = check.string(user['name'], `redis.users[${i}].name`, /^\S+$/, 'one word');
          const rules = check.string(user['rules'], `redis.users[${i}].rules`);
          if (name !== undefined && rules !== undefined) users.push({ name, rules });
        });
      }
    }
    const mode = section['readMode'];
    if (mode !== undefined) {
      if (mode === 'linearizable' || mode === 'leader' || mode === 'any') front.readMode = mode as ReadMode;
      else check.fail('redis.readMode', 'must be "linearizable", "leader" or "any"');
    }
    const followerRequests = section['followerRequests'];
    if (followerRequests !== undefined) {
      if (followerRequests === 'forward' || followerRequests === 'redirect') front.followerRequests = followerRequests;
      else check.fail('redis.followerRequests', 'must be "forward" or "redirect"');
    }
    if (section['requirepass'] !== undefined) {
      const password = check.string(section['requirepass'], 'redis.requirepass');
      if (password !== undefined) front.requirepass = password;
    }
    const integer = (key: keyof typeof front & string, low: number, high: number) => {
      if (section[key] === undefined) return;
      const value = check.integer(section[key], `redis.${key}`, low, high);
      if (value !== undefined) (front as unknown as Record<string, number>)[key] = value;
    };
    integer('maxClients', 1, 1_000_000);
    integer('maxRequestBytes', 1024, 2 ** 32);
    integer('maxPipeline', 1, 1_000_000);
    integer('maxOutputBytes', 1024 * 1024, 2 ** 40);
    integer('idleTimeoutMs', 0, 2 ** 31 - 1);
    if (section['flushBackendOnStart'] !== undefined) {
      if (typeof section['flushBackendOnStart'] === 'boolean') flushBackendOnStart = section['flushBackendOnStart'];
      else check.fail('redis.flushBackendOnStart', 'must be true or false');
    }
  }
  const memcached: MemcachedOptions = {
    readMode: front.readMode,
    followerRequests: front.followerRequests,
    maxClients: front.maxClients,
    maxPipeline: front.maxPipeline,
    maxOutputBytes: front.maxOutputBytes,
    idleTimeoutMs: front.idleTimeoutMs,
  };
  if (root['memcached'] !== undefined) {
    const options = check.object(root['memcached'], 'memcached', memcachedFields);
    if (options !== undefined) {
      const mode = options['readMode'];
      if (mode !== undefined) {
        if (mode === 'linearizable' || mode === 'leader' || mode === 'any') memcached.readMode = mode;
        else check.fail('memcached.readMode', 'must be "linearizable", "leader" or "any"');
      }
      const followerRequests = options['followerRequests'];
      if (followerRequests !== undefined) {
        if (followerRequests === 'forward' || followerRequests === 'redirect') memcached.followerRequests = followerRequests;
        else check.fail('memcached.followerRequests', 'must be "forward" or "redirect"');
      }
      const integer = (key: 'maxClients' | 'maxPipeline' | 'maxOutputBytes' | 'idleTimeoutMs', low: number, high: number) => {
        if (options[key] === undefined) return;
        const value = check.integer(options[key], `memcached.${key}`, low, high);
        if (value !== undefined) memcached[key] = value;
      };
      integer('maxClients', 1, 1_000_000);
      integer('maxPipeline', 1, 1_000_000);
      integer('maxOutputBytes', 1024 * 1024, 2 ** 40);
      integer('idleTimeoutMs', 0, 2 ** 31 - 1);
    }
  }
  const replicas: RedisReplicaAddresses[] = [];
  const memcachedReplicas: RedisProxyConfig['memcachedReplicas'] = [];
  const fronted = new Set<string>();
  const entries = root['replicas'] as Json[];
  entries.forEach((entry, position) => {
    const replica = entry as Record<string, Json>;
    const id = replica['id'] as number;
    const address = (key: string) => {
      const text = check.string(replica[key], `replicas[${position}].${key}`);
      if (text === undefined) return undefined;
      const parsed = parseAddress(text);
      if (typeof parsed === 'string') return check.fail(`replicas[${position}].${key}`, parsed);
      return parsed;
    };
    const backendAddress = (key: string): Endpoint | undefined => {
      const text = check.string(replica[key], `replicas[${position}].${key}`);
      if (text === undefined) return undefined;
      const parsed = parseBackendAddress(text);
      if (typeof parsed === 'string') return check.fail(`replicas[${position}].${key}`, parsed);
      return parsed;
    };
    // Each front end needs both of its addresses, or neither.
    const pair = (front: string, backendKey: string) => {
      if (replica[front] === undefined && replica[backendKey] === undefined) return undefined;
      if (replica[front] === undefined || replica[backendKey] === undefined) {
        return check.fail(`replicas[${position}]`, `give both ${front} and ${backendKey}, or neither`);
      }
      const listen = address(front);
      const backend = backendAddress(backendKey);
      return listen === undefined || backend === undefined ? undefined : { listen, backend };
    };
    const redis = pair('redis', 'redisBackend');
    const cache = pair('memcached', 'memcachedBackend');
    const metrics = replica['metrics'] === undefined ? undefined : address('metrics');
    if (redis !== undefined) replicas[id] = metrics === undefined ? redis : { ...redis, metrics };
    if (cache !== undefined) memcachedReplicas[id] = metrics === undefined ? cache : { ...cache, metrics };
    fronted.add(`${redis !== undefined ? 'redis' : ''}+${cache !== undefined ? 'memcached' : ''}`);
    if (redis === undefined && cache === undefined) check.fail(`replicas[${position}]`, 'fronts nothing: give redis and redisBackend, or memcached and memcachedBackend, or both');
  });
  if (fronted.size > 1) check.fail('replicas', 'every replica must front the same backends (redis, memcached, or both)');
  try {
    AccessControl.fromConfig(front.requirepass, users);
  } catch (error) {
    check.fail('redis.users', (error as Error).message);
  }
  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { cluster, front, memcached, memcachedReplicas, users, flushBackendOnStart, replicas };
}

/** A backend's `host:port`, or an absolute Unix socket path; a problem's description when it is neither. */
export function parseBackendAddress(text: string): Endpoint | string {
  if (!text.startsWith('/')) {
    const parsed = parseAddress(text);
    return typeof parsed === 'string' ? `${parsed}, or an absolute Unix socket path` : parsed;
  }
  if (Buffer.byteLength(text) > UNIX_SOCKET_PATH_MAX_BYTES) return `a Unix socket path holds at most ${UNIX_SOCKET_PATH_MAX_BYTES} bytes; this one has ${Buffer.byteLength(text)}`;
  if (text.endsWith('/')) return 'names a directory, not a Unix socket';
  return { path: text };
}

// Where another host reaches replica `id` listening at `listen`: that address, or, when
// its host is a wildcard (0.0.0.0, ::: the usual choice with host networking), the host
// of the replica's control address (which every replica reaches already) with that port.
export function reachableAt(config: RedisProxyConfig, id: number, listen: { host: string; port: number } | undefined): { host: string; port: number } | undefined {
  if (listen === undefined) return undefined;
  if (listen.host !== '0.0.0.0' && listen.host !== '::') return listen;
  const control = config.cluster.replicas.find((replica) => replica.id === id);
  return control === undefined ? listen : { host: control.host, port: listen.port };
}

export function loadRedisProxyConfig(path: string, env: NodeJS.ProcessEnv = process.env): RedisProxyConfig {
  return validateRedisProxyConfig(readConfigDocument(path), env);
}
