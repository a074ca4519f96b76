// A local redis-server child process, for the tests and the demo: no persistence, no
// eviction, loopback only, its own temporary directory (its log included), removed on stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { RedisBackend } from './redis_backend.js';
import { encodeCommand } from './resp.js';

export const REDIS_SERVER_PATH = '/usr/bin/redis-server';

export interface RedisServerOptions {
  /** Default: a free port. */
  port?: number;
  /** Appended to the fixed arguments (a later directive overrides an earlier one). */
  extraArgs?: string[];
  /** The directory in which the temporary directory is made (default os.tmpdir()); it is not removed. */
  dir?: string;
}

const START_TIMEOUT_MS = 10_000;
const PING_INTERVAL_MS = 20;
const PING_TIMEOUT_MS = 1000;
const STOP_KILL_AFTER_MS = 5_000;
const LOG_TAIL_LINES = 20;
const PORT_ATTEMPTS = 5;
const PONG = '+PONG\r\n';

// redis-server children still running; killed if this process exits without stopping them.
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function killAllOnExit(): void {
  for (const child of running) child.kill('SIGKILL');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not find a free port'))));
    });
  });
}

async function logTail(logPath: string): Promise<string> {
  try {
    const text = await fs.readFile(logPath, 'utf8');
    const lines = text.split('\n').filter((line) => line.trim() !== '');
    return lines.slice(-LOG_TAIL_LINES).join('\n');
  } catch (error) {
    return `(could not read ${logPath}: ${(error as Error).message})`;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class RedisServerProcess {
  /** Starts redis-server and resolves once it answers PING. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
    try {
      await fs.access(REDIS_SERVER_PATH, fsConstants.X_OK);
    } catch {
      throw new Error(
        `${REDIS_SERVER_PATH} is missing (or not executable); install it: npm install runs scripts/install-system-deps.sh`,
      );
    }
    const attempts = options.port === undefined ? PORT_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      try {
        return await RedisServerProcess.startOn(port, options);
      } catch (error) {
        // Another process may take the free port between our probe and redis' bind.
        const portTaken = error instanceof Error && /Address already in use/i.test(error.message);
        if (!portTaken || attempt >= attempts) throw error;
      }
    }
  }

  private static async startOn(port: number, options: RedisServerOptions): Promise<RedisServerProcess> {
    const dir = await fs.mkdtemp(path.join(options.dir ?? os.tmpdir(), 'mu-redis-'));
    const logPath = path.join(dir, 'redis.log');
    // redis logs to stdout (logfile ""); stdout and stderr both go to the log, so errors in
    // the arguments, which redis prints before it opens any log, are kept too.
    const log = await fs.open(logPath, 'a');
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--maxmemory-policy', 'noeviction',
      '--protected-mode', 'yes',
      '--daemonize', 'no',
      '--dir', dir,
      '--logfile', '',
      ...(options.extraArgs ?? []),
    ];
    let child: ChildProcess;
    try {
      child = spawn(REDIS_SERVER_PATH, args, { stdio: ['ignore', log.fd, log.fd] });
    } finally {
      await log.close();
    }
    const server = new RedisServerProcess(child, port, dir, logPath);
    try {
      await server.waitForPing();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  readonly port: number;
  readonly pid: number;
  /** Resolves with the exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  /** The temporary directory (redis' --dir and its log); removed by stop(). */
  readonly dir: string;
  readonly logPath: string;

  private readonly child: ChildProcess;
  private hasExited = false;
  private spawnError: Error | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(child: ChildProcess, port: number, dir: string, logPath: string) {
    this.child = child;
    this.port = port;
    this.pid = child.pid ?? -1;
    this.dir = dir;
    this.logPath = logPath;
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', killAllOnExit);
    }
    running.add(child);
    this.exited = new Promise((resolve) => {
      child.once('error', (error) => {
        // Spawning failed: there is no process, and 'exit' may never come.
        this.spawnError = error;
        if (child.pid === undefined) {
          this.hasExited = true;
          running.delete(child);
          resolve(null);
        }
      });
      child.once('exit', (code) => {
        this.hasExited = true;
        running.delete(child);
        resolve(code);
      });
    });
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT, ...) to redis-server. */
  kill(signal: NodeJS.Signals): void {
    if (!this.hasExited) this.child.kill(signal);
  }

  /** SIGTERM, waits for the exit (SIGKILL after 5 s), removes the temporary directory. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (!this.hasExited) {
        this.child.kill('SIGCONT'); // a stopped process would not act on SIGTERM
        this.child.kill('SIGTERM');
        const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_KILL_AFTER_MS);
        await this.exited;
        clearTimeout(timer);
      }
      await fs.rm(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }

  private async waitForPing(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let lastProblem = 'no answer yet';
    for (;;) {
      if (this.hasExited) {
        const code = await this.exited;
        const how = this.spawnError !== undefined ? `could not be spawned (${this.spawnError.message})` : `exited (code ${code})`;
        throw new Error(
          `redis-server on port ${this.port} ${how} before answering PING; last lines of ${this.logPath}:\n${await logTail(this.logPath)}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `redis-server on port ${this.port} did not answer PING within ${START_TIMEOUT_MS} ms (${lastProblem}); last lines of ${this.logPath}:\n${await logTail(this.logPath)}`,
        );
      }
      try {
        const backend = await RedisBackend.connect({ port: this.port, connectTimeoutMs: PING_TIMEOUT_MS, name: `redis-server :${this.port}` });
        // Whatever answers the port may never reply: give up on this attempt after a while,
        // or at once when the child exits (closing rejects the sends in flight).
        const giveUp = (): void => void backend.close();
        const timer = setTimeout(giveUp, PING_TIMEOUT_MS);
        this.child.once('exit', giveUp);
        try {
          const reply = (await backend.send(encodeCommand(['PING']))).toString('latin1');
          if (reply !== PONG) {
            lastProblem = `PING answered ${JSON.stringify(reply)}`;
          } else {
            // Make sure the answer came from this child, not from whatever else holds the port.
            const info = (await backend.send(encodeCommand(['INFO', 'server']))).toString('latin1');
            if (info.includes(`\r\nprocess_id:${this.pid}\r\n`)) return;
            lastProblem = `another process answers on port ${this.port}`;
          }
        } finally {
          clearTimeout(timer);
          this.child.removeListener('exit', giveUp);
          await backend.close();
        }
      } catch (error) {
        lastProblem = (error as Error).message;
      }
      await sleep(PING_INTERVAL_MS);
    }
  }
}
