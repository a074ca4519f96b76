// docker/entrypoint.sh for real, outside a container: its refusals name what is missing,
// and three of them make a working cluster over shm (real redis-servers, real mu-proxy
// processes). The same script runs over verbs in scripts/rdma-vm/multi-host-test.sh.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';

import { connectOptionsOf, describeEndpoint, type Endpoint } from '../adapters/endpoint.js';
import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import { freePort } from '../mu/testing/free_port.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const entrypoint = path.join(here, 'entrypoint.sh');

function run(env: Record<string, string>): { status: number | null; stderr: string } {
  const result = spawnSync('bash', [entrypoint], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', MU_PROXY_BIN: path.join(root, 'bin', 'mu-proxy'), ...env },
    timeout: 30000,
  });
  return { status: result.status, stderr: result.stderr };
}

function answers(endpoint: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(connectOptionsOf(endpoint));
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function send(at: number | Endpoint, argv: string[]): Promise<string> {
  const endpoint = typeof at === 'number' ? { host: '127.0.0.1', port: at } : at;
  const client = await RedisBackend.connect({ ...endpoint, connectTimeoutMs: 5000 });
  try {
    return (await client.send(encodeCommand(argv))).toString('latin1');
  } finally {
    await client.close();
  }
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('docker/entrypoint.sh', function () {
  this.timeout(180000);
  let directory: string;
  const replicas: ChildProcess[] = [];

  beforeEach(() => {
    directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-entrypoint-test-'));
  });

  afterEach(async () => {
    for (const child of replicas.splice(0)) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      // Its own process group: the entrypoint, its redis-server and its mu-proxy.
      process.kill(-(child.pid as number), 'SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    fs.rmSync(directory, { recursive: true, force: true });
  });

  it('refuses to start without MU_REPLICA_ID, or on verbs without the RDMA device, and says why', () => {
    const unnamed = run({ MU_CONFIG: path.join(here, 'config', 'cluster.roce.json') });
    expect(unnamed.status).to.equal(2);
    expect(unnamed.stderr).to.include('MU_REPLICA_ID must be');
    const config = JSON.parse(fs.readFileSync(path.join(here, 'config', 'cluster.roce.json'), 'utf8')) as Record<string, unknown>;
    config['fabric'] = { backend: 'verbs', device: 'no-such-device0', port: 1, gidIndex: 1 };
    fs.writeFileSync(path.join(directory, 'cluster.json'), JSON.stringify(config));
    const verbs = run({ MU_REPLICA_ID: '0', MU_CONFIG: path.join(directory, 'cluster.json'), MU_DATA_DIR: directory });
    expect(verbs.status, verbs.stderr).to.equal(2);
    // Which check refuses depends on the machine: no RDMA stack at all, or not this device.
    const expected = fs.existsSync('/dev/infiniband') ? "no RDMA device 'no-such-device0'" : '/dev/infiniband is missing';
    expect(verbs.stderr).to.include(expected);
  });

  it('three of them make a cluster over shm (one redis-server on a Unix socket): writes replicate, and SIGTERM stops the proxy and its redis-server', async () => {
    const ports = { control: [] as number[], redis: [] as number[] };
    const backends: Endpoint[] = [];
    for (let id = 0; id < 3; id++) {
      ports.control.push(await freePort());
      ports.redis.push(await freePort());
      backends.push(id === 2 ? { path: path.join(directory, 'sockets', 'redis-2.sock') } : { host: '127.0.0.1', port: await freePort() });
    }
    fs.writeFileSync(path.join(directory, 'secret'), crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(
      configPath,
      JSON.stringify({
        cluster: `entrypoint-${crypto.randomBytes(3).toString('hex')}`,
        secretFile: path.join(directory, 'secret'),
        fabric: { backend: 'shm' },
        // A 20 ms window: this test shares two cores with everything else.
        engine: { logBytes: 4 << 20, maxEntryBytes: 65536, failureDetector: { readIntervalUs: 2000, failureReads: 10 } },
        replicas: [0, 1, 2].map((id) => ({
          id,
          control: `127.0.0.1:${ports.control[id]}`,
          redis: `127.0.0.1:${ports.redis[id]}`,
          redisBackend: describeEndpoint(backends[id] as Endpoint).replace(/^unix:/, ''),
        })),
      }),
    );
    for (let id = 0; id < 3; id++) {
      const child = spawn('bash', [entrypoint], {
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          MU_REPLICA_ID: String(id),
          MU_CONFIG: configPath,
          MU_DATA_DIR: path.join(directory, 'data'),
          MU_PROXY_BIN: path.join(root, 'bin', 'mu-proxy'),
        },
      });
      let log = '';
      child.stderr?.on('data', (chunk: Buffer) => (log = `${log}${chunk.toString()}`.slice(-4000)));
      // An entrypoint that gives up on its own says why (the cleanup's SIGKILL is no news).
      child.once('exit', (status, signal) => {
        if (signal === null && status !== 0) console.log(`entrypoint ${id} exited with ${status}:\n${log}`);
      });
      replicas.push(child);
    }
    // A leader that all three know: a replica that started late (a majority starts
    // without it) learns the leader only once it has joined.
    const leader = await until('a leader all three follow', 120000, async () => {
      const statuses: Array<{ role?: string; leader?: number | null }> = [];
      for (let id = 0; id < 3; id++) {
        const reply = await send(ports.redis[id] as number, ['MU', 'STATUS']).catch(() => '');
        const json = /\{.*\}/s.exec(reply)?.[0];
        statuses.push(json === undefined ? {} : (JSON.parse(json) as { role?: string; leader?: number | null }));
      }
      const leaders = statuses.flatMap((status, id) => (status.role === 'leader' ? [id] : []));
      if (leaders.length !== 1) return undefined;
      return statuses.every((status) => status.leader === leaders[0]) ? leaders[0] : undefined;
    });
    const follower = (leader + 1) % 3;
    // MU STATUS shows each link: what this replica's card says of it (connected to the
    // peer's incarnation, and the paired resets so far), and that the peer's control
    // plane answers.
    type LinkReport = { link: string; held: boolean; resetsStarted: number; controlReachable: boolean } | null;
    const links = (JSON.parse(/\{.*\}/s.exec(await send(ports.redis[leader] as number, ['MU', 'STATUS']))?.[0] ?? '{}') as { links?: LinkReport[] }).links;
    expect(links?.[leader]).to.equal(null);
    for (const peer of [follower, (leader + 2) % 3]) {
      expect(links?.[peer]).to.include({ controlReachable: true });
      expect(links?.[peer]?.held).to.be.a('boolean');
      expect(links?.[peer]?.link).to.match(/^[0-9a-f]{16}\/\d+\/\d+$/);
    }
    expect(await send(ports.redis[follower] as number, ['SET', 'deployed', 'yes'])).to.equal('+OK\r\n');
    expect(await send(ports.redis[(leader + 2) % 3] as number, ['GET', 'deployed'])).to.equal('$3\r\nyes\r\n');
    // Every backend holds the write: each replica applied it.
    for (let id = 0; id < 3; id++) {
      await until(`the write on replica ${id}'s redis-server`, 30000, async () =>
        (await send(backends[id] as Endpoint, ['GET', 'deployed'])) === '$3\r\nyes\r\n' ? true : undefined,
      );
    }
    // A stopped container: the entrypoint exits 0 once its proxy and its backend are gone.
    const stopped = replicas[follower] as ChildProcess;
    const exited = new Promise<number | null>((resolve) => stopped.once('exit', resolve));
    stopped.kill('SIGTERM');
    expect(await exited).to.equal(0);
    expect(await answers({ host: '127.0.0.1', port: ports.redis[follower] as number })).to.equal(false);
    expect(await answers(backends[follower] as Endpoint)).to.equal(false);
    // Two of three still make a majority.
    expect(await send(ports.redis[leader] as number, ['SET', 'after', 'stop'])).to.equal('+OK\r\n');
  });
});
