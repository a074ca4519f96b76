// A local redis-server child process, for the tests and the demo: no persistence, no
// eviction, loopback only, its own temporary directory (its log included), removed on stop.
import { describeEndpoint } from '../endpoint.js';
import { ServerProcess, type ServerKind, type ServerProcessOptions } from '../server_process.js';
import { RedisBackend } from './redis_backend.js';
import { encodeCommand } from './resp.js';

export const REDIS_SERVER_PATH = '/usr/bin/redis-server';

export type RedisServerOptions = ServerProcessOptions;

const PONG = '+PONG\r\n';

const redisServer: ServerKind = {
  name: 'redis-server',
  binary: REDIS_SERVER_PATH,
  // redis logs to stdout (logfile ""), which goes to the log file.
  unixOnly: false,
  args: (port, dir, extraArgs, socketPath) => [
    '--port', String(port),
    '--bind', '127.0.0.1',
    ...(socketPath === undefined ? [] : ['--unixsocket', socketPath, '--unixsocketperm', '700']),
    '--save', '',
    '--appendonly', 'no',
    '--maxmemory-policy', 'noeviction',
    '--protected-mode', 'yes',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', '',
    ...extraArgs,
  ],
  async probe(endpoint, pid, timeoutMs, abandon) {
    const backend = await RedisBackend.connect({ ...endpoint, connectTimeoutMs: timeoutMs, name: `redis-server ${describeEndpoint(endpoint)}` });
    // Whatever answers the port may never reply: give up on this attempt after a while,
    // or at once when the child exits (closing rejects the sends in flight).
    const giveUp = (): void => void backend.close();
    const timer = setTimeout(giveUp, timeoutMs);
    const forget = abandon(giveUp);
    try {
      const reply = (await backend.send(encodeCommand(['PING']))).toString('latin1');
      if (reply !== PONG) throw new Error(`PING answered ${JSON.stringify(reply)}`);
      // Make sure the answer came from this child, not from whatever else holds the port.
      const info = (await backend.send(encodeCommand(['INFO', 'server']))).toString('latin1');
      if (!info.includes(`\r\nprocess_id:${pid}\r\n`)) throw new Error(`another process answers at ${describeEndpoint(endpoint)}`);
    } finally {
      clearTimeout(timer);
      forget();
      await backend.close();
    }
  },
};

// A running redis-server (ServerProcess); RedisServerProcess.start launches one.
export type RedisServerProcess = ServerProcess;
export const RedisServerProcess = {
  /** Starts redis-server and resolves once it answers PING. */
  start(options: RedisServerOptions = {}): Promise<ServerProcess> {
    return ServerProcess.start(redisServer, options);
  },
};
