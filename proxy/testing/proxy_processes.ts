// Test support: a Redis proxy cluster of real processes: N redis-servers and N
// `mu-proxy start` processes (separate Node processes over shm), which tests can stop,
// resume and kill like any deployment's.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';
import { freePort } from './redis_cluster.js';
import { startInTurn } from '../../mu/testing/start_all.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliPath = path.join(root, 'proxy', 'cli.ts');
const tsxLoader = pathToFileURL(path.join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
// Every backend allows DEBUG DIGEST (to compare replicas), a restarted one included.
const serverArgs = ['--enable-debug-command', 'local'];

export class ProxyProcesses {
  readonly proxies: Array<ChildProcess | undefined> = [];
  private constructor(
    readonly servers: RedisServerProcess[],
    readonly proxyPorts: number[],
    readonly configPath: string,
    readonly clusterName: string,
    private readonly directory: string,
    private readonly verbose: boolean,
  ) {}

  // `detector`: the failure-detection window (reads every readIntervalUs, a peer suspected
  // after failureReads reads without progress); 20 ms by default, for failover tests.
  // `backendsOver`: how the proxies reach their redis-servers (TCP by default; the tests of
  // the in-process cluster cover Unix sockets).
  static async start(
    replicas = 3,
    detector: { readIntervalUs: number; failureReads: number } = { readIntervalUs: 2000, failureReads: 10 },
    backendsOver: 'tcp' | 'unix' = 'tcp',
  ): Promise<ProxyProcesses> {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-proxy-processes-'));
    const socketOf = (id: number) => (backendsOver === 'unix' ? path.join(directory, `redis-${id}.sock`) : undefined);
    const servers = await startInTurn(replicas, (id) => RedisServerProcess.start({ unixSocket: socketOf(id), extraArgs: serverArgs }));
    const proxyPorts: number[] = [];
    const controlPorts: number[] = [];
    for (let i = 0; i < replicas; i++) {
      proxyPorts.push(await freePort());
      controlPorts.push(await freePort());
    }
    const clusterName = `proxy-test-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    const secretFile = path.join(directory, 'secret');
    fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(
      configPath,
      JSON.stringify({
        cluster: clusterName,
        secretFile,
        fabric: { backend: 'shm' },
        engine: { logBytes: 32 << 20, failureDetector: detector },
        replicas: servers.map((server, id) => ({
          id,
          control: `127.0.0.1:${controlPorts[id]}`,
          redis: `127.0.0.1:${proxyPorts[id]}`,
          redisBackend: server.socketPath ?? `127.0.0.1:${server.port}`,
        })),
      }),
    );
    const cluster = new ProxyProcesses(servers, proxyPorts, configPath, clusterName, directory, process.env['MU_TEST_VERBOSE'] === '1');
    for (let id = 0; id < replicas; id++) cluster.launch(id);
    return cluster;
  }

  // MU_PROXY_NODE_ARGS: extra Node options for the replica processes, space-separated
  // (for a profile: "--cpu-prof --cpu-prof-dir=/tmp/prof"; NODE_OPTIONS refuses those).
  launch(id: number): ChildProcess {
    const nodeArgs = (process.env['MU_PROXY_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== '');
    const child = spawn(process.execPath, [...nodeArgs, '--import', tsxLoader, cliPath, 'start', '--config', this.configPath, '--id', String(id), '--stop-on-stdin-close'], {
      stdio: ['pipe', 'inherit', this.verbose ? 'inherit' : 'ignore'],
    });
    this.proxies[id] = child;
    return child;
  }

  // Runs `mu-proxy <args>` with this cluster's configuration file (appended as --config).
  runCli(args: string[]): Promise<{ code: number | null; stdout: string }> {
    return runMuProxyCli(args, this.configPath);
  }

  async status(id: number): Promise<Record<string, unknown> | undefined> {
    try {
      const client = await RedisBackend.connect({ port: this.proxyPorts[id] as number, connectTimeoutMs: 300 });
      try {
        // A stopped process accepts connections (the kernel does) but never answers.
        const raw = (
          await Promise.race([
            client.send(encodeCommand(['MU', 'STATUS'])),
            new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer')), 300)),
          ])
        ).toString();
        return raw.startsWith('$') ? (JSON.parse(raw.slice(raw.indexOf('\n') + 1)) as Record<string, unknown>) : undefined;
      } finally {
        await client.close();
      }
    } catch {
      return undefined;
    }
  }

  // The replica that says it leads and that every other answering replica follows.
  async leader(among: number[] = [...this.proxyPorts.keys()], timeoutMs = 60000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = await Promise.all(among.map((id) => this.status(id)));
      const leaders = among.filter((_, i) => statuses[i]?.['role'] === 'leader');
      if (leaders.length === 1 && statuses.every((status) => status?.['leader'] === leaders[0])) return leaders[0] as number;
      if (Date.now() > deadline) throw new Error(`no settled leader among ${among.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // Ends replica `id`'s redis-server (SIGKILL: a crash, by default) and starts a fresh,
  // empty one on the same port, as an operator replacing a failed server would; the proxy
  // in front of it is left alone. Resolves with the new server once it answers PING.
  async restartServer(id: number, signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Promise<RedisServerProcess> {
    const old = this.servers[id];
    if (old === undefined) throw new Error(`no redis-server for replica ${id}`);
    old.kill(signal);
    await old.exited;
    await old.stop(); // removes its directory
    const fresh = await RedisServerProcess.start({ port: old.port, unixSocket: old.socketPath, extraArgs: serverArgs });
    this.servers[id] = fresh;
    return fresh;
  }

  async digest(id: number): Promise<string> {
    const client = await RedisBackend.connect({ port: (this.servers[id] as RedisServerProcess).port });
    try {
      return (await client.send(encodeCommand(['DEBUG', 'DIGEST']))).toString().trim();
    } finally {
      await client.close();
    }
  }

  // Waits until the backends of `ids` have equal digests; returns them.
  async converged(ids: number[], timeoutMs = 20000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const digests = await Promise.all(ids.map((id) => this.digest(id)));
      if (digests.every((digest) => digest === digests[0]) || Date.now() > deadline) return digests;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.proxies.map(async (proxy) => {
        if (proxy === undefined || proxy.exitCode !== null || proxy.signalCode !== null) return;
        proxy.kill('SIGCONT');
        proxy.stdin?.end();
        const timer = setTimeout(() => proxy.kill('SIGKILL'), 5000);
        await new Promise((resolve) => proxy.once('exit', resolve));
        clearTimeout(timer);
      }),
    );
    await Promise.all(this.servers.map((server) => server.stop()));
    fs.rmSync(this.directory, { recursive: true, force: true });
    fs.rmSync(path.join('/dev/shm', `mu-${this.clusterName}`), { recursive: true, force: true });
  }
}

// Runs `mu-proxy <args> --config <configPath>` to its end; its stderr goes to the test's.
export function runMuProxyCli(args: string[], configPath: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsxLoader, cliPath, ...args, '--config', configPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout }));
  });
}
