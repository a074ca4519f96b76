// mu-proxy: the command line.
//
//   mu-proxy start --config cluster.json --id N   run replica N (its redis-server must be up)
//   mu-proxy status --config cluster.json         each replica's MU STATUS, one line each
//   mu-proxy demo [--keep] [--requests N]          three replicas on this host, a workload,
//                                                  a failover and a digest check
import { RedisBackend } from '../adapters/redis/redis_backend.js';
import { encodeCommand } from '../adapters/redis/resp.js';
import { ConfigError } from '../mu/config.js';
import { loadRedisProxyConfig } from './redis/config.js';
import { RedisReplica } from './redis/redis_replica.js';

function usage(problem?: string): never {
  if (problem !== undefined) console.error(`mu-proxy: ${problem}`);
  console.error(`usage:
  mu-proxy start --config <file> --id <n>
  mu-proxy status --config <file>
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
  const replica = await RedisReplica.start(config, Number(idText));
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
  for (const [id, addresses] of config.replicas.entries()) {
    const where = `${addresses.listen.host}:${addresses.listen.port}`;
    try {
      const client = await RedisBackend.connect({ host: addresses.listen.host, port: addresses.listen.port, connectTimeoutMs: 2000 });
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

const [command, ...args] = process.argv.slice(2);
try {
  switch (command) {
    case 'start':
      await start(args);
      break;
    case 'status':
      await status(args);
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
