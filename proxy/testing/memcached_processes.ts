// Test support: a memcached proxy cluster of real processes: N memcached servers and N
// `mu-proxy start` processes over shm, which tests can stop, resume and kill.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { MemcachedBackend } from '../../adapters/memcached/memcached_backend.js';
import { MemcachedServerProcess } from '../../adapters/memcached/memcached_server_process.js';
import { freePort } from '../../mu/testing/free_port.js';
import { dump } from './memcached_cluster.js';
import { runMuProxyCli } from './proxy_processes.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliPath = path.join(root, 'proxy', 'cli.ts');
const tsxLoader = pathToFileURL(path.join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export class MemcachedProcesses {
  readonly proxies: Array<ChildProcess | undefined> = [];
  private constructor(
    readonly servers: MemcachedServerProcess[],
    readonly proxyPorts: number[],
    private readonly configPath: string,
    private readonly clusterName: string,
    private readonly directory: string,
  ) {}

  static async start(replicas = 3): Promise<MemcachedProcesses> {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-memcached-processes-'));
    const servers: MemcachedServerProcess[] = [];
    for (let i = 0; i < replicas; i++) servers.push(await MemcachedServerProcess.start());
    const proxyPorts: number[] = [];
    const controlPorts: number[] = [];
    for (let i = 0; i < replicas; i++) {
      proxyPorts.push(await freePort());
      controlPorts.push(await freePort());
    }
    const clusterName = `memcached-processes-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    const secretFile = path.join(directory, 'secret');
    fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(
      configPath,
      JSON.stringify({
        cluster: clusterName,
        secretFile,
        fabric: { backend: 'shm' },
        engine: { logBytes: 32 << 20, failureDetector: { readIntervalUs: 2000, failureReads: 10 } },
        replicas: servers.map((server, id) => ({
          id,
          control: `127.0.0.1:${controlPorts[id]}`,
          memcached: `127.0.0.1:${proxyPorts[id]}`,
          memcachedBackend: `127.0.0.1:${server.port}`,
        })),
      }),
    );
    const cluster = new MemcachedProcesses(servers, proxyPorts, configPath, clusterName, directory);
    for (let id = 0; id < replicas; id++) {
      cluster.proxies[id] = spawn(process.execPath, ['--import', tsxLoader, cliPath, 'start', '--config', configPath, '--id', String(id), '--stop-on-stdin-close'], {
        stdio: ['pipe', 'inherit', process.env['MU_TEST_VERBOSE'] === '1' ? 'inherit' : 'ignore'],
      });
    }
    return cluster;
  }

  // Runs `mu-proxy <args>` with this cluster's configuration file (appended as --config).
  runCli(args: string[]): Promise<{ code: number | null; stdout: string }> {
    return runMuProxyCli(args, this.configPath);
  }

  // The replica's role from the proxy's lines in `stats`; undefined when it does not answer.
  async role(id: number): Promise<string | undefined> {
    return (await this.roleAndLeader(id))?.role;
  }

  // Replica `id`'s role and the leader it follows (-1: none), from its stats.
  private async roleAndLeader(id: number): Promise<{ role: string | undefined; leader: number } | undefined> {
    try {
      const client = await MemcachedBackend.connect({ port: this.proxyPorts[id] as number, connectTimeoutMs: 300 });
      try {
        const stats = await Promise.race([
          client.send(Buffer.from('stats\r\n'), 'stats'),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer')), 300)),
        ]);
        const lines = stats.toString('latin1');
        return { role: /^STAT mu_role (\S+)\r$/m.exec(lines)?.[1], leader: Number(/^STAT mu_leader (-?\d+)\r$/m.exec(lines)?.[1] ?? -1) };
      } finally {
        await client.close();
      }
    } catch {
      return undefined;
    }
  }

  async leader(among = this.proxyPorts.map((_, id) => id), timeoutMs = 30000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    // One leader that every replica asked about and answering follows (a replica that
    // started late learns the leader only once it has joined; a stopped one is skipped).
    while (Date.now() < deadline) {
      const seen = await Promise.all(among.map((id) => this.roleAndLeader(id)));
      const leaders = among.filter((_, i) => seen[i]?.role === 'leader');
      if (leaders.length === 1 && seen.every((status) => status === undefined || status.leader === leaders[0])) return leaders[0] as number;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no settled leader among replicas ${among.join(', ')}`);
  }

  // The items of the given replicas' memcached servers once they agree (or as they are).
  async converged(ids: number[], timeoutMs = 30000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const contents = await Promise.all(ids.map((id) => dump((this.servers[id] as MemcachedServerProcess).endpoint)));
      if (contents.every((one) => one === contents[0]) || Date.now() > deadline) return contents;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    for (const proxy of this.proxies) {
      if (proxy === undefined || proxy.exitCode !== null) continue;
      proxy.kill('SIGCONT');
      proxy.stdin?.end();
    }
    await Promise.all(
      this.proxies.map((proxy) => {
        if (proxy === undefined || proxy.exitCode !== null || proxy.signalCode !== null) return undefined;
        const timer = setTimeout(() => proxy.kill('SIGKILL'), 5000);
        return new Promise((resolve) => proxy.once('exit', resolve)).finally(() => clearTimeout(timer));
      }),
    );
    await Promise.all(this.servers.map((server) => server.stop()));
    fs.rmSync(this.directory, { recursive: true, force: true });
    fs.rmSync(path.join('/dev/shm', `mu-${this.clusterName}`), { recursive: true, force: true });
  }
}
