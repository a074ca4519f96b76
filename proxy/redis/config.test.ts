// The Redis proxy's configuration: the documented example validates, the defaults are the
// documented ones, and a bad section names the field and the problem.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';

import { ConfigError } from '../../mu/config.js';
import { frontEndDefaults } from './front_end.js';
import { validateRedisProxyConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const environment = { MU_CLUSTER_SECRET: 'a-secret-of-at-least-16-bytes' };

function minimal(redis?: Record<string, unknown>): Record<string, unknown> {
  return {
    cluster: 'c',
    replicas: [0, 1, 2].map((id) => ({ id, control: `127.0.0.1:${7400 + id}`, redis: `127.0.0.1:${6380 + id}`, redisBackend: `127.0.0.1:${6390 + id}` })),
    ...(redis === undefined ? {} : { redis }),
  };
}

function problems(document: unknown): string[] {
  try {
    validateRedisProxyConfig(document, environment);
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split('\n').slice(1).map((line) => line.trim());
    throw error;
  }
  return [];
}

describe('Redis proxy configuration', () => {
  it('accepts docs/cluster.example.json, as documented', () => {
    const example = JSON.parse(fs.readFileSync(path.join(root, 'docs', 'cluster.example.json'), 'utf8')) as Record<string, unknown>;
    delete example['secretFile']; // the example's path does not exist here
    const config = validateRedisProxyConfig(example, environment);
    expect(config.front.followerRequests).to.equal('forward');
    expect(config.front.requirepass).to.equal('change-me');
    expect(config.replicas[2]).to.deep.equal({
      listen: { host: '0.0.0.0', port: 6380 },
      backend: { path: '/run/mu-proxy/redis.sock' },
      metrics: { host: '0.0.0.0', port: 9121 },
    });
    expect(config.cluster.fabric).to.deep.equal({ backend: 'verbs', device: 'mlx5_0', port: 1, gidIndex: 3 });
  });

  it('takes the documented defaults when the redis section is absent', () => {
    const config = validateRedisProxyConfig(minimal(), environment);
    const { host: _host, ...defaults } = frontEndDefaults;
    expect(config.front).to.deep.equal(defaults);
    expect(config.front.readMode).to.equal('linearizable');
    expect(config.front.followerRequests).to.equal('forward');
    expect(config.flushBackendOnStart).to.equal(false);
  });

  it('names every bad field', () => {
    expect(problems(minimal({ followerRequests: 'proxy', readMode: 'fast', maxClients: 0, typo: 1 }))).to.have.members([
      'redis.typo: unknown field (known: readMode, followerRequests, requirepass, users, maxClients, maxRequestBytes, maxPipeline, maxOutputBytes, idleTimeoutMs, flushBackendOnStart)',
      'redis.readMode: must be "linearizable", "leader" or "any"',
      'redis.followerRequests: must be "forward" or "redirect"',
      'redis.maxClients: must be between 1 and 1000000, got 0',
    ]);
  });

  it('takes memcached front ends alone or beside Redis, and refuses replicas that differ or front nothing', () => {
    const base = minimal();
    const replicas: Array<Record<string, unknown>> = (base['replicas'] as Array<Record<string, unknown>>).map((replica, id) => ({
      ...replica,
      memcached: `127.0.0.1:${11300 + id}`,
      memcachedBackend: `127.0.0.1:${11400 + id}`,
    }));
    const both = validateRedisProxyConfig({ ...base, replicas, memcached: { readMode: 'any' } }, environment);
    expect(both.memcachedReplicas[1]).to.deep.equal({ listen: { host: '127.0.0.1', port: 11301 }, backend: { host: '127.0.0.1', port: 11401 } });
    expect(both.replicas[1]?.listen.port).to.equal(6381);
    expect(both.memcached.readMode).to.equal('any');
    const only = validateRedisProxyConfig(
      { ...base, replicas: replicas.map(({ redis: _redis, redisBackend: _backend, ...rest }) => rest) },
      environment,
    );
    expect(only.replicas).to.deep.equal([]);
    expect(only.memcachedReplicas).to.have.length(3);
    const mixed = replicas.map((replica, id) => (id === 0 ? { id: 0, control: replica['control'], memcached: replica['memcached'], memcachedBackend: replica['memcachedBackend'] } : replica));
    expect(problems({ ...base, replicas: mixed })).to.deep.equal(['replicas: every replica must front the same backends (redis, memcached, or both)']);
    const half = replicas.map((replica, id) => (id === 2 ? { id: 2, control: replica['control'], memcached: replica['memcached'] } : replica));
    expect(problems({ ...base, replicas: half })).to.include('replicas[2]: give both memcached and memcachedBackend, or neither');
    expect(problems({ ...base, replicas: [{ id: 0, control: '127.0.0.1:7400' }] })).to.include('replicas[0]: fronts nothing: give redis and redisBackend, or memcached and memcachedBackend, or both');
  });

  it('takes a backend at host:port or at an absolute Unix socket path, and says what is wrong with others', () => {
    const base = minimal();
    const withBackends = (redisBackend: (id: number) => string, memcachedBackend: (id: number) => string) => ({
      ...base,
      replicas: (base['replicas'] as Array<Record<string, unknown>>).map((replica, id) => ({
        ...replica,
        redisBackend: redisBackend(id),
        memcached: `127.0.0.1:${11300 + id}`,
        memcachedBackend: memcachedBackend(id),
      })),
    });
    const config = validateRedisProxyConfig(withBackends((id) => `/run/mu/redis-${id}.sock`, (id) => `/run/mu/memcached-${id}.sock`), environment);
    expect(config.replicas[2]?.backend).to.deep.equal({ path: '/run/mu/redis-2.sock' });
    expect(config.memcachedReplicas[0]?.backend).to.deep.equal({ path: '/run/mu/memcached-0.sock' });
    const long = `/${'d'.repeat(107)}`;
    expect(problems(withBackends((id) => (id === 0 ? 'run/redis.sock' : id === 1 ? long : '/run/mu/'), () => '[::1]:11211'))).to.deep.equal([
      'replicas[0].redisBackend: must be host:port (IPv6 in brackets), or an absolute Unix socket path',
      'replicas[1].redisBackend: a Unix socket path holds at most 107 bytes; this one has 108',
      'replicas[2].redisBackend: names a directory, not a Unix socket',
    ]);
  });
});
