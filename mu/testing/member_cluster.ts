// Test and benchmark support: a cluster of member processes (mu/testing/member_process.ts)
// on this machine, over shm, with a configuration file of their own. Each process can be
// asked for its status or applied commands, stopped (SIGSTOP), resumed, killed and
// restarted.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import type { ReplicaStatus } from '../replica.js';
import { freePort } from './free_port.js';

const memberScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'member_process.ts');

export type MemberEvent = { event: string; [key: string]: unknown };

export interface MemberClusterOptions {
  replicas?: number;
  // 'shm' by default; MU_MEMBER_FABRIC=verbs (with MU_VERBS_DEVICE, MU_VERBS_GID_INDEX)
  // runs the same tests on RDMA verbs, as scripts/rdma-vm does inside the Soft-RoCE VM.
  fabric?: 'shm' | 'verbs';
  // Failure detection sized for shared cores (see docs/PERFORMANCE.md): reads every
  // readIntervalUs, a peer suspected after failureReads reads without progress.
  readIntervalUs?: number;
  failureReads?: number;
  logBytes?: number;
  idleStrategy?: 'backoff' | 'yield' | 'spin';
  pollAfterSubmitUs?: number;
  verbose?: boolean;
  // The replicas launched by start() (default: all); the others can be launched later.
  launch?: number[];
  // engine.unknownOutcomeMs (default: the engine's).
  unknownOutcomeMs?: number;
  // engine.linkResetMs (default: the engine's).
  linkResetMs?: number;
}

export class MemberProcess {
  readonly events: MemberEvent[] = [];
  private waiters: Array<{ match: (event: MemberEvent) => boolean; resolve: (event: MemberEvent) => void }> = [];
  private nextTag = 1;
  readonly exited: Promise<number | null>;

  constructor(
    readonly id: number,
    readonly child: ChildProcessWithoutNullStreams,
    verbose: boolean,
  ) {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let event: MemberEvent;
      try {
        event = JSON.parse(line) as MemberEvent;
      } catch {
        return;
      }
      this.events.push(event);
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.match(event)) return true;
        waiter.resolve(event);
        return false;
      });
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (verbose) process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  waitFor(match: (event: MemberEvent) => boolean, what: string, timeoutMs = 20000): Promise<MemberEvent> {
    const seen = this.events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`replica ${this.id}: timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
      });
    });
  }

  async request(op: Record<string, unknown>, timeoutMs = 20000): Promise<MemberEvent> {
    const tag = this.nextTag++;
    const reply = this.waitFor((event) => event['tag'] === tag, `a reply to ${String(op['op'])}`, timeoutMs);
    this.child.stdin.write(`${JSON.stringify({ ...op, tag })}\n`);
    return reply;
  }

  async status(): Promise<ReplicaStatus> {
    return (await this.request({ op: 'status' }))['status'] as ReplicaStatus;
  }

  async applied(): Promise<string[]> {
    return (await this.request({ op: 'applied' }))['items'] as string[];
  }

  send(op: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(op)}\n`);
  }

  signal(name: NodeJS.Signals): void {
    this.child.kill(name);
  }
}

export class MemberCluster {
  readonly members: Array<MemberProcess | undefined> = [];
  private constructor(
    readonly clusterName: string,
    readonly directory: string,
    readonly configPath: string,
    readonly size: number,
    private readonly verbose: boolean,
    private readonly pollAfterSubmitUs: number | undefined,
  ) {}

  static async start(options: MemberClusterOptions = {}): Promise<MemberCluster> {
    const size = options.replicas ?? 3;
    const fabric = options.fabric ?? (process.env['MU_MEMBER_FABRIC'] === 'verbs' ? 'verbs' : 'shm');
    // Under emulation (the Soft-RoCE VM) everything is ~100x slower: a wider window.
    const defaultReadIntervalUs = fabric === 'verbs' ? 20000 : 2000;
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-cluster-'));
    const ports: number[] = [];
    for (let i = 0; i < size; i++) ports.push(await freePort());
    const config = {
      cluster: `members-${process.pid}-${crypto.randomBytes(3).toString('hex')}`,
      secretFile: path.join(directory, 'secret'),
      fabric:
        fabric === 'verbs'
          ? {
              backend: 'verbs',
              device: process.env['MU_VERBS_DEVICE'] ?? 'rxe0',
              gidIndex: Number(process.env['MU_VERBS_GID_INDEX'] ?? '1'),
            }
          : { backend: 'shm' },
      replicas: ports.map((port, id) => ({ id, control: `127.0.0.1:${port}` })),
      engine: {
        logBytes: options.logBytes ?? 8 << 20,
        maxEntryBytes: 64 << 10,
        idleStrategy: options.idleStrategy ?? 'backoff',
        ...(options.unknownOutcomeMs === undefined ? {} : { unknownOutcomeMs: options.unknownOutcomeMs }),
        ...(options.linkResetMs === undefined ? {} : { linkResetMs: options.linkResetMs }),
        failureDetector: {
          readIntervalUs: options.readIntervalUs ?? defaultReadIntervalUs,
          failureReads: options.failureReads ?? 10,
        },
      },
    };
    fs.writeFileSync(config.secretFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
    const configPath = path.join(directory, 'cluster.json');
    fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
    const cluster = new MemberCluster(config.cluster, directory, configPath, size, options.verbose ?? process.env['MU_TEST_VERBOSE'] === '1', options.pollAfterSubmitUs);
    for (const id of options.launch ?? Array.from({ length: size }, (_, id) => id)) cluster.launch(id);
    try {
      await Promise.all(cluster.members.map((member) => member?.waitFor((event) => event.event === 'started', 'start-up', 60000)));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  launch(id: number): MemberProcess {
    const extra = this.pollAfterSubmitUs === undefined ? [] : ['--poll-us', String(this.pollAfterSubmitUs)];
    const child = spawn(process.execPath, ['--import', 'tsx', memberScript, '--config', this.configPath, '--id', String(id), ...extra], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const member = new MemberProcess(id, child, this.verbose);
    this.members[id] = member;
    return member;
  }

  member(id: number): MemberProcess {
    const member = this.members[id];
    if (member === undefined) throw new Error(`replica ${id} is not running`);
    return member;
  }

  // The one replica whose engine says it leads, among those given (all by default), once
  // exactly one does, every one of them has granted it its log, and that has held for a
  // few polls (a fresh cluster may still be settling its first election).
  async leader(among: number[] = [...Array(this.size).keys()], timeoutMs = 20000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let candidate = -1;
    let stablePolls = 0;
    for (;;) {
      const statuses = await Promise.all(among.map((id) => this.member(id).status()));
      const leaders = among.filter((_, i) => statuses[i]?.role === 'leader');
      const agreed = leaders.length === 1 && statuses.every((status) => status.holder === leaders[0]);
      if (agreed && leaders[0] === candidate) {
        if (++stablePolls >= 3) return candidate;
      } else {
        candidate = agreed ? (leaders[0] ?? -1) : -1;
        stablePolls = 0;
      }
      if (Date.now() > deadline) {
        const detail = among
          .map((id, i) => `replica ${id}: ${statuses[i]?.role} holder ${statuses[i]?.holder} | ${statuses[i]?.backgroundDetail}`)
          .join('\n  ');
        throw new Error(`no settled leader among ${among.join(', ')} (leaders: ${leaders.join(', ')})\n  ${detail}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (member) => {
        if (member === undefined) return;
        member.signal('SIGCONT');
        member.child.stdin.end();
        const timer = setTimeout(() => member.signal('SIGKILL'), 5000);
        await member.exited;
        clearTimeout(timer);
      }),
    );
    fs.rmSync(this.directory, { recursive: true, force: true });
    // The members' shm files (a killed process cannot remove its own).
    fs.rmSync(path.join('/dev/shm', `mu-${this.clusterName}`), { recursive: true, force: true });
  }
}
