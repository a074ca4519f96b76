// The deployment files, checked without a Docker engine (the project's machines have
// none, so the image is never built here): both compose files pass the compose client's
// own validation, give the container what RoCE needs (host networking, /dev/infiniband,
// IPC_LOCK, unlimited memlock, the secret), and mount configurations that the proxy's own
// loader accepts; the Dockerfile copies what exists and starts the entrypoint.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';
import yaml from 'js-yaml';

import { loadRedisProxyConfig } from '../proxy/redis/config.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

type Service = Record<string, unknown> & {
  environment?: Record<string, string>;
  volumes?: string[];
  secrets?: Array<{ source: string; target: string }>;
};
interface Compose {
  services: Record<string, Service>;
  secrets?: Record<string, { file?: string }>;
}

function readCompose(name: string): Compose {
  return yaml.load(fs.readFileSync(path.join(here, name), 'utf8')) as Compose;
}

// `${NAME:-default}` as compose expands it when NAME is unset.
function withDefaults(text: string): string {
  return text.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');
}

// The host side of the volume mounted at `target`, relative to docker/.
function mountedAt(service: Service, target: string): string {
  const volume = (service.volumes ?? []).map(withDefaults).find((entry) => entry.split(':')[1] === target);
  expect(volume, `a volume mounted at ${target}`).to.be.a('string');
  return path.resolve(here, (volume as string).split(':')[0] as string);
}

// The configuration a service mounts, loaded by the proxy's loader. Its secretFile must
// be where the compose file mounts the docker secret; the file itself exists only in a
// container, so a stand-in holds a secret for the loader.
function loadMountedConfig(compose: Compose, service: Service): ReturnType<typeof loadRedisProxyConfig> {
  const configPath = mountedAt(service, service.environment?.['MU_CONFIG'] ?? '/etc/mu-proxy/cluster.json');
  const document = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  const secret = service.secrets?.[0];
  expect(secret, 'the service mounts the cluster secret').to.not.equal(undefined);
  expect(compose.secrets?.[secret?.source as string]?.file, 'the secret comes from a file').to.be.a('string');
  expect(document['secretFile']).to.equal(`/run/secrets/${secret?.target}`);
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-compose-test-'));
  try {
    const secretPath = path.join(directory, 'secret');
    fs.writeFileSync(secretPath, 'a-secret-of-at-least-16-bytes\n', { mode: 0o600 });
    const standIn = path.join(directory, 'cluster.json');
    fs.writeFileSync(standIn, JSON.stringify({ ...document, secretFile: secretPath }));
    return loadRedisProxyConfig(standIn, {});
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

// The compose client that validates without an engine: docker-compose (v1, Debian's
// package) or the docker CLI's compose plugin.
function composeClient(): string[] {
  for (const candidate of [['docker', 'compose'], ['docker-compose']]) {
    const probe = spawnSync(candidate[0] as string, [...candidate.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error('no compose client: install the docker-compose package (or the docker compose plugin) to validate docker/*.yml');
}

function composeConfig(file: string, env: Record<string, string>): { status: number | null; output: string } {
  const [command, ...args] = composeClient();
  // An empty environment file: a docker/.env left by an operator must not change the outcome.
  const envFile = path.join(os.tmpdir(), `mu-compose-test-${process.pid}.env`);
  fs.writeFileSync(envFile, '');
  const result = spawnSync(command as string, [...args, '--env-file', envFile, '-f', path.join(here, file), 'config', '-q'], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: os.tmpdir(), ...env },
  });
  fs.rmSync(envFile, { force: true });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('docker/: compose files and image (no engine needed)', () => {
  it('the compose client accepts both files; the RoCE file refuses to run without MU_REPLICA_ID', () => {
    const roce = composeConfig('docker-compose.yml', { MU_REPLICA_ID: '0' });
    expect(roce.status, roce.output).to.equal(0);
    const shm = composeConfig('docker-compose.shm.yml', {});
    expect(shm.status, shm.output).to.equal(0);
    const unnamed = composeConfig('docker-compose.yml', {});
    expect(unnamed.status, unnamed.output).to.not.equal(0);
    expect(unnamed.output).to.include('MU_REPLICA_ID');
  });

  it('docker-compose.yml gives the replica host networking, /dev/infiniband, IPC_LOCK, unlimited memlock and the secret', () => {
    const compose = readCompose('docker-compose.yml');
    const services = Object.values(compose.services);
    expect(services).to.have.length(1);
    const service = services[0] as Service;
    expect(service['network_mode']).to.equal('host');
    expect((service['devices'] as string[]).map((device) => device.split(':')[0])).to.include('/dev/infiniband');
    expect(service['cap_add']).to.include('IPC_LOCK');
    const memlock = (service['ulimits'] as Record<string, unknown>)['memlock'];
    expect(typeof memlock === 'object' ? memlock : { soft: memlock, hard: memlock }).to.deep.equal({ soft: -1, hard: -1 });
    expect(service.environment?.['MU_REPLICA_ID']).to.match(/^\$\{MU_REPLICA_ID:\?/);
    const config = loadMountedConfig(compose, service);
    expect(config.cluster.fabric.backend).to.equal('verbs');
    expect(config.cluster.replicas).to.have.length(3);
    // One replica per host: the hosts differ, the ports may repeat.
    expect(new Set(config.cluster.replicas.map((replica) => replica.host)).size).to.equal(3);
  });

  it('docker-compose.shm.yml runs replicas 0, 1 and 2 on one host, sharing /dev/shm, on distinct ports and sockets', () => {
    const compose = readCompose('docker-compose.shm.yml');
    const services = Object.values(compose.services);
    expect(services.map((service) => service.environment?.['MU_REPLICA_ID'])).to.deep.equal(['0', '1', '2']);
    for (const service of services) {
      expect(service['network_mode']).to.equal('host');
      expect(service['ipc']).to.equal('host');
      const config = loadMountedConfig(compose, service);
      expect(config.cluster.fabric).to.deep.equal({ backend: 'shm', shmRoot: '/dev/shm' });
      const ports = config.replicas.flatMap((addresses) => [addresses.listen.port, addresses.backend.port ?? addresses.backend.path, addresses.metrics?.port]);
      ports.push(...config.cluster.replicas.map((replica) => replica.port));
      expect(new Set(ports).size, `ports and sockets ${ports.join(' ')}`).to.equal(ports.length);
    }
  });

  it('the Dockerfile builds on Debian bookworm with Node 20, copies files that exist and runs the entrypoint', () => {
    const dockerfile = fs.readFileSync(path.join(here, 'Dockerfile'), 'utf8');
    const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((match) => match[1]);
    expect(bases).to.deep.equal(['node:20-bookworm', 'node:20-bookworm-slim']);
    for (const match of dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const sources = (match[1] as string).trim().split(/\s+/).slice(0, -1);
      for (const source of sources) expect(fs.existsSync(path.join(root, source)), `COPY ${source}`).to.equal(true);
    }
    for (const wanted of ['libibverbs1', 'ibverbs-providers', 'rdma-core', 'redis-server', 'redis-tools', 'memcached']) {
      expect(dockerfile, wanted).to.match(new RegExp(`\\s${wanted}\\s`));
    }
    const addonCmake = fs.readFileSync(path.join(root, 'native', 'addon', 'CMakeLists.txt'), 'utf8');
    expect(dockerfile).to.include('--target mu_addon');
    expect(addonCmake).to.match(/add_library\(mu_addon MODULE/);
    expect(dockerfile).to.include('COPY docker/entrypoint.sh /usr/local/bin/mu-entrypoint');
    expect(dockerfile).to.match(/^ENTRYPOINT \["\/usr\/local\/bin\/mu-entrypoint"\]$/m);
  });
});
