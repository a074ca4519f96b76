// A local memcached child process, for the tests and the demo: loopback TCP (or a Unix
// socket only), no UDP, its own temporary directory (its log), removed on stop. Its memory
// is set large enough that the tests never make it evict: eviction is local to each
// server, so replicas that evicted differently would hold different data (docs: the
// memcached front end).
import os from 'node:os';

import { describeEndpoint } from '../endpoint.js';
import { ServerProcess, type ServerKind, type ServerProcessOptions } from '../server_process.js';
import { MemcachedBackend } from './memcached_backend.js';

export const MEMCACHED_PATH = '/usr/bin/memcached';

export type MemcachedServerOptions = ServerProcessOptions;

const memcachedServer: ServerKind = {
  name: 'memcached',
  binary: MEMCACHED_PATH,
  unixOnly: true,
  args: (port, _dir, extraArgs, socketPath) => [
    ...(socketPath === undefined ? ['-p', String(port), '-l', '127.0.0.1'] : ['-s', socketPath, '-a', '0700']),
    '-U', '0',
    '-m', '256',
    // memcached refuses to run as root without being told which user to be.
    ...(os.userInfo().uid === 0 ? ['-u', 'root'] : []),
    ...extraArgs,
  ],
  async probe(endpoint, pid, timeoutMs, abandon) {
    const backend = await MemcachedBackend.connect({ ...endpoint, connectTimeoutMs: timeoutMs, name: `memcached ${describeEndpoint(endpoint)}` });
    const giveUp = (): void => void backend.close();
    const timer = setTimeout(giveUp, timeoutMs);
    const forget = abandon(giveUp);
    try {
      const stats = (await backend.send(Buffer.from('stats\r\n'), 'stats')).toString('latin1');
      // Make sure the answer came from this child, not from whatever else holds the port.
      if (!stats.includes(`STAT pid ${pid}\r\n`)) throw new Error(`another process answers at ${describeEndpoint(endpoint)}`);
    } finally {
      clearTimeout(timer);
      forget();
      await backend.close();
    }
  },
};

// A running memcached (ServerProcess); MemcachedServerProcess.start launches one.
export type MemcachedServerProcess = ServerProcess;
export const MemcachedServerProcess = {
  /** Starts memcached and resolves once it answers. */
  start(options: MemcachedServerOptions = {}): Promise<ServerProcess> {
    return ServerProcess.start(memcachedServer, options);
  },
};
