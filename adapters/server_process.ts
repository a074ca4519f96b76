// A local backend server as a child process (redis-server, memcached), for the tests and
// the demo: loopback only, a free port, its own temporary directory (its log included),
// removed on stop; a start-up failure reported with the server's own last log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { describeEndpoint, type Endpoint } from './endpoint.js';

export interface ServerProcessOptions {
  /** Default: a free port. */
  port?: number;
  /** Appended to the fixed arguments (a later directive overrides an earlier one). */
  extraArgs?: string[];
  /** The directory in which the temporary directory is made (default os.tmpdir()); it is not removed. */
  dir?: string;
  /**
   * Listen on a Unix socket too (redis-server), or there only (memcached: its -s turns TCP
   * off), and give that as `endpoint`: at this path, or with `true` in the temporary
   * directory. Default false.
   */
  unixSocket?: boolean | string | undefined;
}

const START_TIMEOUT_MS = 10_000;
const PING_INTERVAL_MS = 20;
const PING_TIMEOUT_MS = 1000;
const STOP_KILL_AFTER_MS = 5_000;
const LOG_TAIL_LINES = 20;
const PORT_ATTEMPTS = 5;

// Server children still running; killed if this process exits without stopping them.
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

// What differs between servers: the binary, its arguments, and how to tell that the
// server answering the port is this child.
export interface ServerKind {
  name: string; // 'redis-server'
  binary: string;
  // With a socket path, the server listens there (and, unless `unixOnly`, on `port` too).
  args(port: number, dir: string, extraArgs: readonly string[], socketPath: string | undefined): string[];
  // Whether listening on a Unix socket turns the TCP port off.
  unixOnly: boolean;
  // Resolves when the server at `endpoint` answers and is the process `pid`; rejects with
  // the problem otherwise. `abandon` fires when the child exits (give up at once).
  probe(endpoint: Endpoint, pid: number, timeoutMs: number, abandon: (giveUp: () => void) => () => void): Promise<void>;
}

export class ServerProcess {
  /** Starts the server and resolves once it answers (ServerKind.probe). */
  static async start(kind: ServerKind, options: ServerProcessOptions = {}): Promise<ServerProcess> {
    try {
      await fs.access(kind.binary, fsConstants.X_OK);
    } catch {
      throw new Error(`${kind.binary} is missing (or not executable); install it: npm install runs scripts/install-system-deps.sh`);
    }
    const tcp = options.unixSocket === undefined || options.unixSocket === false || !kind.unixOnly;
    const attempts = options.port === undefined && tcp ? PORT_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      const port = tcp ? (options.port ?? (await freePort())) : 0;
      try {
        return await ServerProcess.startOn(kind, port, options);
      } catch (error) {
        // Another process may take the free port between our probe and the server's bind.
        const portTaken = error instanceof Error && /Address already in use/i.test(error.message);
        if (!portTaken || attempt >= attempts) throw error;
      }
    }
  }

  private static async startOn(kind: ServerKind, port: number, options: ServerProcessOptions): Promise<ServerProcess> {
    const dir = await fs.mkdtemp(path.join(options.dir ?? os.tmpdir(), `mu-${kind.name}-`));
    const logPath = path.join(dir, `${kind.name}.log`);
    const socketPath = typeof options.unixSocket === 'string' ? options.unixSocket : options.unixSocket === true ? path.join(dir, `${kind.name}.sock`) : undefined;
    // stdout and stderr both go to the log, so errors in the arguments, which a server
    // prints before it opens any log of its own, are kept too.
    const log = await fs.open(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(kind.binary, kind.args(port, dir, options.extraArgs ?? [], socketPath), { stdio: ['ignore', log.fd, log.fd] });
    } finally {
      await log.close();
    }
    const server = new ServerProcess(kind, child, port, socketPath, dir, logPath);
    try {
      await server.waitUntilAnswering();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** The TCP port; 0 when the server listens on its Unix socket only. */
  readonly port: number;
  /** The Unix socket the server listens on (with `unixSocket`). */
  readonly socketPath: string | undefined;
  readonly pid: number;
  /** Resolves with the exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  /** The temporary directory (the server's working directory and its log); removed by stop(). */
  readonly dir: string;
  readonly logPath: string;

  private readonly child: ChildProcess;
  private hasExited = false;
  private spawnError: Error | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly kind: ServerKind,
    child: ChildProcess,
    port: number,
    socketPath: string | undefined,
    dir: string,
    logPath: string,
  ) {
    this.child = child;
    this.port = port;
    this.socketPath = socketPath;
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

  /** Where clients reach it: the Unix socket when there is one, else the TCP port. */
  get endpoint(): Endpoint {
    return this.socketPath !== undefined ? { path: this.socketPath } : { host: '127.0.0.1', port: this.port };
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT, ...) to the server. */
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

  private async waitUntilAnswering(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let lastProblem = 'no answer yet';
    for (;;) {
      if (this.hasExited) {
        const code = await this.exited;
        const how = this.spawnError !== undefined ? `could not be spawned (${this.spawnError.message})` : `exited (code ${code})`;
        throw new Error(
          `${this.kind.name} at ${describeEndpoint(this.endpoint)} ${how} before answering; last lines of ${this.logPath}:\n${await logTail(this.logPath)}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${this.kind.name} at ${describeEndpoint(this.endpoint)} did not answer within ${START_TIMEOUT_MS} ms (${lastProblem}); last lines of ${this.logPath}:\n${await logTail(this.logPath)}`,
        );
      }
      try {
        await this.kind.probe(this.endpoint, this.pid, PING_TIMEOUT_MS, (giveUp) => {
          this.child.once('exit', giveUp);
          return () => this.child.removeListener('exit', giveUp);
        });
        return;
      } catch (error) {
        lastProblem = (error as Error).message;
      }
      await sleep(PING_INTERVAL_MS);
    }
  }
}
