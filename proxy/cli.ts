// mu-proxy: the command line.
//
//   mu-proxy start --config cluster.json --id N   run replica N (its redis-server must be up)
//   mu-proxy status --config cluster.json         each replica's MU STATUS, one line each
//   mu-proxy check --config cluster.json          every replica's DEBUG DIGEST at one log index
//   mu-proxy demo [--keep] [--requests N]          three replicas on this host, a workload,
//                                                  a failover and a digest check
import { MemcachedBackend } from '../adapters/memcached/memcached_backend.js';
import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import { ConfigError } from '../mu/config.js';
import { loadRedisProxyConfig } from './redis/config.js';
import { clientAddress, RedisReplica } from './redis/redis_replica.js';
import { MemcachedReplica, memcachedClientAddress } from './memcached/memcached_replica.js';

function usage(problem?: string): never {
  if (problem !== undefined) console.error(`mu-proxy: ${problem}`);
  console.error(`usage:
  mu-proxy start --config <file> --id <n>
  mu-proxy status --config <file>
  mu-proxy check --config <file> [--timeout-ms <n>]
  mu-proxy demo [--keep] [--requests <n>]`);
  process.exit(2);
}

function option(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = args[at + 1];
  if (value === undefined || value.startsWith('--')) usage(`${name} needs a value`);
  return value;
}

async function start(args: string[]): Promise<void> {
  const configPath = option(args, '--config') ?? usage('start needs --config');
  const idText = option(args, '--id') ?? usage('start needs --id');
  if (!/^\d+$/.test(idText)) usage(`--id must be a replica id, got ${idText}`);
  const config = loadRedisProxyConfig(configPath);
  const id = Number(idText);
  // A replica with a Redis front end (and a memcached one too, if configured), or a
  // memcached front end alone.
  const replica = config.replicas[id] === undefined && config.memcachedReplicas[id] !== undefined ? await MemcachedReplica.start(config, id) : await RedisReplica.start(config, id);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void replica.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Parent-driven runs (the demo, the tests) close stdin to stop a replica.
  if (args.includes('--stop-on-stdin-close')) process.stdin.on('end', stop).resume();
}

async function status(args: string[]): Promise<void> {
  const configPath = option(args, '--config') ?? usage('status needs --config');
  const config = loadRedisProxyConfig(configPath);
  // A cluster that fronts memcached only: the proxy's lines of each replica's `stats`.
  for (const id of config.replicas.length > 0 ? [] : config.memcachedReplicas.keys()) {
    const address = memcachedClientAddress(config, id) as { host: string; port: number };
    const where = `${address.host}:${address.port}`;
    try {
      const client = await MemcachedBackend.connect({ host: address.host, port: address.port, connectTimeoutMs: 2000 });
      const stats = (await client.send(Buffer.from('stats\r\n'), 'stats')).toString('latin1');
      await client.close();
      const fields = [...stats.matchAll(/^STAT mu_(\S+) (\S+)\r$/gm)].map(([, name, value]) => `${name}=${value}`);
      console.log(`replica ${id} (${where}): ${fields.join(' ')}`);
    } catch (error) {
      console.log(`replica ${id} (${where}): unreachable (${(error as Error).message})`);
    }
  }
  for (const id of config.replicas.keys()) {
    const address = clientAddress(config, id) as { host: string; port: number };
    const where = `${address.host}:${address.port}`;
    try {
      const client = await RedisBackend.connect({ host: address.host, port: address.port, connectTimeoutMs: 2000 });
      const commands = config.front.requirepass === undefined ? [] : [encodeCommand(['AUTH', config.front.requirepass])];
      const replies = await client.sendMany([...commands, encodeCommand(['MU', 'STATUS'])]);
      await client.close();
      const raw = (replies[replies.length - 1] as Buffer).toString();
      console.log(`replica ${id} (${where}): ${raw.slice(raw.indexOf('\n') + 1).trim()}`);
    } catch (error) {
      console.log(`replica ${id} (${where}): unreachable (${(error as Error).message})`);
    }
  }
}

// How `check` talks to a replica: over its Redis port (MU STATUS, MU CHECK, MU DIGEST), or
// over its memcached port for a cluster that fronts memcached only (stats, mu_check,
// mu_digest).
interface CheckProtocol {
  ids: number[];
  role(id: number): Promise<string | undefined>;
  // The digest entry's index, or the refusal.
  propose(id: number): Promise<{ index: string } | { refused: string }>;
  // The replica's digest at `index`: 'pending' until it applied that entry.
  digest(id: number, index: string): Promise<string>;
}

function redisCheckProtocol(config: ReturnType<typeof loadRedisProxyConfig>): CheckProtocol {
  const auth = config.front.requirepass === undefined ? [] : [encodeCommand(['AUTH', config.front.requirepass])];
  const ask = async (id: number, argv: string[]): Promise<string> => {
    const address = clientAddress(config, id) as { host: string; port: number };
    const client = await RedisBackend.connect({ host: address.host, port: address.port, connectTimeoutMs: 2000 });
    try {
      const replies = await client.sendMany([...auth, encodeCommand(argv)]);
      return (replies[replies.length - 1] as Buffer).toString('latin1');
    } finally {
      await client.close();
    }
  };
  return {
    ids: [...config.replicas.keys()],
    async role(id) {
      const raw = await ask(id, ['MU', 'STATUS']);
      return raw[0] === '$' ? (JSON.parse(raw.slice(raw.indexOf('\n') + 1)) as { role: string }).role : undefined;
    },
    async propose(id) {
      const proposed = await ask(id, ['MU', 'CHECK']);
      const index = /^\*2\r\n:(\d+)\r\n/.exec(proposed)?.[1];
      return index === undefined ? { refused: proposed.trim() } : { index };
    },
    async digest(id, index) {
      const answer = await ask(id, ['MU', 'DIGEST', index]);
      // DEBUG DIGEST answers a simple string; errors and the rest are shown as they are.
      return answer === '$-1\r\n' ? 'pending' : (answer.startsWith('+') ? answer.slice(1) : answer).trim();
    },
  };
}

function memcachedCheckProtocol(config: ReturnType<typeof loadRedisProxyConfig>): CheckProtocol {
  const ask = async (id: number, request: string, shape: 'line' | 'stats'): Promise<string> => {
    const address = memcachedClientAddress(config, id) as { host: string; port: number };
    const client = await MemcachedBackend.connect({ host: address.host, port: address.port, connectTimeoutMs: 2000 });
    try {
      return (await client.send(Buffer.from(`${request}\r\n`), shape)).toString('latin1').trim();
    } finally {
      await client.close();
    }
  };
  return {
    ids: [...config.memcachedReplicas.keys()],
    role: async (id) => /^STAT mu_role (\S+)\r$/m.exec(`${await ask(id, 'stats', 'stats')}\r\n`)?.[1],
    async propose(id) {
      const answer = await ask(id, 'mu_check', 'line');
      const index = /^DIGEST (\d+) /.exec(answer)?.[1];
      return index === undefined ? { refused: answer } : { index };
    },
    async digest(id, index) {
      const answer = await ask(id, `mu_digest ${index}`, 'line');
      if (answer === 'PENDING') return 'pending';
      return answer.startsWith('DIGEST ') ? answer.slice('DIGEST '.length) : answer;
    },
  };
}

// The replicas' backends compared at one point of the log: the leader proposes a digest
// entry (MU CHECK), every replica records its backends' digests when it applies that
// entry (DEBUG DIGEST of its redis-server; a hash of its memcached's items, keys, expiry,
// CAS and size), and each is asked for them (MU DIGEST <index>). Exit status: 0 all
// equal, 1 some differ, 3 some replica could not be asked or did not apply the entry in
// time.
async function check(args: string[]): Promise<number> {
  const configPath = option(args, '--config') ?? usage('check needs --config');
  const timeoutMs = Number(option(args, '--timeout-ms') ?? 10000);
  const config = loadRedisProxyConfig(configPath);
  const protocol = config.replicas.length > 0 ? redisCheckProtocol(config) : memcachedCheckProtocol(config);
  // An election can be under way when the check starts: wait for it, within the timeout.
  const leaderDeadline = Date.now() + timeoutMs;
  let leader: number | undefined;
  while (leader === undefined) {
    for (const id of protocol.ids) {
      if ((await protocol.role(id).catch(() => undefined)) === 'leader') leader = id;
    }
    if (leader !== undefined) break;
    if (Date.now() > leaderDeadline) {
      console.log(`no replica led within ${timeoutMs} ms: nothing to compare`);
      return 3;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const proposed = await protocol.propose(leader);
  if ('refused' in proposed) {
    console.log(`replica ${leader} (leader) refused the check: ${proposed.refused}`);
    return 3;
  }
  const { index } = proposed;
  console.log(`digest entry at log index ${index}, proposed by replica ${leader}`);
  const digests = new Map<number, string>();
  let incomplete = false;
  for (const id of protocol.ids) {
    const deadline = Date.now() + timeoutMs;
    let answer: string;
    for (;;) {
      answer = await protocol.digest(id, index).catch((error: Error) => `unreachable (${error.message})`);
      if (answer !== 'pending' || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const text = answer === 'pending' ? `not applied within ${timeoutMs} ms` : answer;
    if (/^([0-9a-f]{40}|(redis:[0-9a-f]{40} )?memcached:[0-9a-f]{40})$/.test(text)) digests.set(id, text);
    else incomplete = true;
    console.log(`replica ${id}: ${text}`);
  }
  const distinct = new Set(digests.values());
  if (distinct.size > 1) {
    console.log(`DIFFERENT: ${distinct.size} distinct digests at index ${index}`);
    return 1;
  }
  console.log(incomplete ? `the replicas that answered agree; some did not answer` : `all ${digests.size} replicas agree`);
  return incomplete ? 3 : 0;
}

const [command, ...args] = process.argv.slice(2);
try {
  switch (command) {
    case 'start':
      await start(args);
      break;
    case 'status':
      await status(args);
      break;
    case 'check':
      process.exitCode = await check(args);
      break;
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      process.exitCode = await runDemo(args);
      break;
    }
    default:
      usage(command === undefined ? undefined : `unknown command '${command}'`);
  }
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`mu-proxy: ${error.message}`);
    process.exit(2);
  }
  console.error(`mu-proxy: ${(error as Error).message}`);
  process.exit(1);
}
