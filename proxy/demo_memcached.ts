// `npm run demo -- --backend memcached`: the demo with memcached. Three memcached servers
// on Unix sockets, three mu-proxy replicas in front of them over the shm fabric (separate
// processes), sets through the leader with latency percentiles, the leader stopped
// (SIGSTOP) and the time until a write succeeds again measured, then every replica's
// items compared. --keep leaves it all running.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { MemcachedBackend } from '../adapters/memcached/memcached_backend.js';
import { MemcachedServerProcess } from '../adapters/memcached/memcached_server_process.js';
import { freePort } from '../mu/testing/free_port.js';
import { percentile, say } from './demo.js';
import { dump } from './testing/memcached_cluster.js';

const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.ts');
const tsxLoader = pathToFileURL(path.join(path.dirname(cliPath), '..', 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

// The replica's role, from the proxy's own lines in `stats`.
async function role(port: number): Promise<string | undefined> {
  try {
    const client = await MemcachedBackend.connect({ port, connectTimeoutMs: 500 });
    const stats = await Promise.race([
      client.send(Buffer.from('stats\r\n'), 'stats'),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer')), 500)),
    ]).finally(() => void client.close());
    return /^STAT mu_role (\S+)\r$/m.exec(stats.toString('latin1'))?.[1];
  } catch {
    return undefined;
  }
}

export async function runMemcachedDemo(args: string[]): Promise<number> {
  const keep = args.includes('--keep');
  const requestsAt = args.indexOf('--requests');
  const requests = requestsAt >= 0 ? Number(args[requestsAt + 1]) : 20000;
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-proxy-demo-'));
  const servers: MemcachedServerProcess[] = [];
  const proxies: ChildProcess[] = [];
  const cluster = `demo-${crypto.randomBytes(3).toString('hex')}`;
  try {
    say('starting three memcached servers');
    for (let i = 0; i < 3; i++) servers.push(await MemcachedServerProcess.start({ unixSocket: true }));
    const controlPorts = [await freePort(), await freePort(), await freePort()];
    const proxyPorts = [await freePort(), await freePort(), await freePort()];
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(path.join(directory, 'secret'), crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    fs.writeFileSync(
      configPath,
      JSON.stringify(
        {
          cluster,
          secretFile: path.join(directory, 'secret'),
          fabric: { backend: 'shm' },
          engine: { logBytes: 64 << 20, failureDetector: { readIntervalUs: 2000, failureReads: 10 } },
          memcached: { readMode: 'linearizable' },
          replicas: [0, 1, 2].map((id) => ({
            id,
            control: `127.0.0.1:${controlPorts[id]}`,
            memcached: `127.0.0.1:${proxyPorts[id]}`,
            memcachedBackend: servers[id]?.socketPath,
          })),
        },
        null,
        2,
      ),
    );
    say(`starting three mu-proxy replicas (config ${configPath})`);
    for (let id = 0; id < 3; id++) {
      const child = spawn(process.execPath, ['--import', tsxLoader, cliPath, 'start', '--config', configPath, '--id', String(id)], { stdio: ['ignore', 'inherit', 'pipe'] });
      child.stderr?.on('data', () => {});
      proxies.push(child);
    }
    const findLeader = async (among: number[]): Promise<number> => {
      const deadline = Date.now() + 60000;
      while (Date.now() < deadline) {
        for (const id of among) if ((await role(proxyPorts[id] as number)) === 'leader') return id;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no leader among replicas ${among.join(', ')}`);
    };
    const leader = await findLeader([0, 1, 2]);
    say(`replica ${leader} leads`);

    const client = await MemcachedBackend.connect({ port: proxyPorts[leader] as number });
    const latenciesUs: number[] = [];
    const started = Date.now();
    for (let i = 0; i < requests; i++) {
      const value = `value-${i}`;
      const before = process.hrtime.bigint();
      const answer = (await client.send(Buffer.from(`set key:${i % 1000} 0 0 ${value.length}\r\n${value}\r\n`), 'line')).toString();
      latenciesUs.push(Number(process.hrtime.bigint() - before) / 1000);
      if (answer !== 'STORED\r\n') throw new Error(`set answered ${answer.trim()}`);
      if (i > 0 && i % Math.max(1, Math.floor(requests / 4)) === 0) say(`${i} sets done`);
    }
    const seconds = (Date.now() - started) / 1000;
    latenciesUs.sort((a, b) => a - b);
    say(
      `${requests} sets through the leader, one at a time: p50 ${percentile(latenciesUs, 0.5).toFixed(1)} us, p90 ${percentile(latenciesUs, 0.9).toFixed(1)} us, p99 ${percentile(latenciesUs, 0.99).toFixed(1)} us (${Math.round(requests / seconds)} per second)`,
    );
    say(`get key:7 -> ${(await client.send(Buffer.from('get key:7\r\n'), 'values')).toString().split('\r\n')[1]}`);
    await client.close();

    say(`stopping the leader's process (SIGSTOP replica ${leader})`);
    const proxy = proxies[leader] as ChildProcess;
    proxy.kill('SIGSTOP');
    const stoppedAt = process.hrtime.bigint();
    const newLeader = await findLeader([0, 1, 2].filter((id) => id !== leader));
    let stored = false;
    while (!stored) {
      const other = await MemcachedBackend.connect({ port: proxyPorts[newLeader] as number, connectTimeoutMs: 200 });
      stored = (await other.send(Buffer.from('set after-failover 0 0 3\r\nyes\r\n'), 'line')).toString() === 'STORED\r\n';
      await other.close();
    }
    const unavailableMs = Number(process.hrtime.bigint() - stoppedAt) / 1e6;
    say(`replica ${newLeader} took over: writes were unavailable for ${unavailableMs.toFixed(1)} ms (detection window 20 ms)`);
    proxy.kill('SIGCONT');
    say(`resumed replica ${leader}: it rejoins as a follower`);

    const deadline = Date.now() + 30000;
    for (;;) {
      const contents = await Promise.all(servers.map((server) => dump(server.endpoint)));
      if (contents.every((one) => one === contents[0])) {
        say(`all three memcached servers hold the same ${contents[0]?.split('\n').length} items, with the same CAS values`);
        break;
      }
      if (Date.now() > deadline) {
        say('the memcached servers hold different items');
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (keep) {
      say('the cluster keeps running (Ctrl-C to stop it). Connect with:');
      for (let id = 0; id < 3; id++) say(`  printf 'get key:7\\r\\n' | nc 127.0.0.1 ${proxyPorts[id]}    # replica ${id}`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    return 0;
  } finally {
    for (const proxy of proxies) {
      proxy.kill('SIGCONT');
      proxy.kill('SIGTERM');
    }
    await Promise.all(proxies.map((proxy) => new Promise((resolve) => (proxy.exitCode !== null ? resolve(null) : proxy.once('exit', resolve)))));
    await Promise.all(servers.map((server) => server.stop()));
    fs.rmSync(directory, { recursive: true, force: true });
    fs.rmSync(path.join('/dev/shm', `mu-${cluster}`), { recursive: true, force: true });
  }
}
