// The Redis front end's part of the cluster configuration file: a "redis" section for
// options every replica shares, and per replica the address its clients connect to and
// the address of its own redis-server.
//
//   "redis": { "readMode": "linearizable", "requirepass": "...", "maxClients": 10000, ... },
//   "replicas": [ { "id": 0, "control": "10.0.0.1:7400",
//                   "redis": "0.0.0.0:6380", "redisBackend": "127.0.0.1:6379",
//                   "metrics": "0.0.0.0:9121" }, ... ]     (metrics: optional)
import { Checker, ConfigError, parseAddress, readConfigDocument, validateClusterConfig, type ClusterConfig, type Json } from '../../mu/config.js';
import { AccessControl } from './acl.js';
import { frontEndDefaults, type FrontEndOptions, type ReadMode } from './front_end.js';

export interface RedisReplicaAddresses {
  listen: { host: string; port: number };
  backend: { host: string; port: number };
  metrics?: { host: string; port: number }; // Prometheus /metrics, when configured
}

export interface RedisProxyConfig {
  cluster: ClusterConfig;
  front: Omit<FrontEndOptions, 'host' | 'port'>;
  users: Array<{ name: string; rules: string }>; // ACL-style users (acl.ts)
  flushBackendOnStart: boolean;
  replicas: RedisReplicaAddresses[]; // by id
}

const redisFields = ['readMode', 'followerRequests', 'requirepass', 'users', 'maxClients', 'maxRequestBytes', 'maxPipeline', 'maxOutputBytes', 'idleTimeoutMs', 'flushBackendOnStart'];

export function validateRedisProxyConfig(document: unknown, env: NodeJS.ProcessEnv = process.env): RedisProxyConfig {
  const cluster = validateClusterConfig(document, env, undefined, { rootFields: ['redis'], replicaFields: ['redis', 'redisBackend', 'metrics'] });
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
  const replicas: RedisReplicaAddresses[] = [];
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
    const listen = address('redis');
    const backend = address('redisBackend');
    const metrics = replica['metrics'] === undefined ? undefined : address('metrics');
    if (listen !== undefined && backend !== undefined) replicas[id] = metrics === undefined ? { listen, backend } : { listen, backend, metrics };
  });
  try {
    AccessControl.fromConfig(front.requirepass, users);
  } catch (error) {
    check.fail('redis.users', (error as Error).message);
  }
  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { cluster, front, users, flushBackendOnStart, replicas };
}

export function loadRedisProxyConfig(path: string, env: NodeJS.ProcessEnv = process.env): RedisProxyConfig {
  return validateRedisProxyConfig(readConfigDocument(path), env);
}
