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
      backend: { host: '127.0.0.1', port: 6379 },
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
});
