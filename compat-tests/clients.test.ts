// Real clients against the proxy: ioredis, node-redis 4, redis-cli (one-shot commands and
// --pipe mass insertion) and redis-benchmark, each talking to the cluster leader's proxy
// port. redis-cli's one-shot output is also compared with a plain redis-server's. After
// each test every replica's backend has the same digest.
import { spawn } from 'node:child_process';

import { expect } from 'chai';
import { Redis as IORedis } from 'ioredis';
import { commandOptions, createClient } from 'redis';

import { RedisServerProcess } from '../adapters/redis/redis_server_process.js';
import { RedisCluster } from '../proxy/testing/redis_cluster.js';
import { atLeader, expectReplicasAgree, seededRandom } from './support.js';

const REDIS_CLI = '/usr/bin/redis-cli';
const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Runs a program to its end (killed after timeoutMs), with optional stdin.
function runProgram(file: string, args: string[], options: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(stdout).toString('latin1'), stderr: Buffer.concat(stderr).toString('latin1') });
    });
    child.stdin.on('error', () => {}); // the program may exit before reading everything
    child.stdin.end(options.input ?? '');
  });
}

// The RESP encoding redis-cli --pipe expects on its stdin.
function resp(argv: string[]): string {
  return `*${argv.length}\r\n${argv.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

// `count` rounds of SET, INCRBY and RPUSH, as RESP.
function massInsertion(count: number): string {
  const input: string[] = [];
  for (let i = 0; i < count; i++) {
    input.push(resp(['SET', `pipe:${i}`, `value-${i}`]));
    input.push(resp(['INCRBY', 'pipe:counter', String(i)]));
    input.push(resp(['RPUSH', 'pipe:list', String(i)]));
  }
  return input.join('');
}

// redis-benchmark -q: "NAME: 12345.67 requests per second, p50=..." per finished test
// (progress lines are separated by \r).
function benchmarkResults(output: string): Map<string, number> {
  const results = new Map<string, number>();
  for (const line of output.split(/[\r\n]+/)) {
    const match = /^(.+?): ([\d.]+) requests per second/.exec(line.trim());
    if (match !== null) results.set(match[1] as string, Number(match[2]));
  }
  return results;
}

describe('compat: real clients against the proxy leader', function () {
  this.timeout(60000);
  let cluster: RedisCluster;
  let plain: RedisServerProcess;

  before(async () => {
    plain = await RedisServerProcess.start({ extraArgs: ['--enable-debug-command', 'local'] });
    cluster = await RedisCluster.start();
    await cluster.leader();
  });
  after(async () => {
    await cluster?.stop();
    await plain?.stop();
  });

  describe('ioredis', () => {
    // A client connected to the leader, closed (QUIT) after the body.
    const withIORedis = (body: (redis: IORedis) => Promise<void>) =>
      atLeader(cluster, async (port) => {
        const redis = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
        redis.on('error', () => {}); // surfaced through the commands
        await redis.connect();
        try {
          await body(redis);
        } finally {
          if (redis.status === 'ready') await redis.quit();
          redis.disconnect();
        }
      });

    it('set/get, counters, hashes and lists', () =>
      withIORedis(async (redis) => {
        expect(await redis.set('io:k', 'value')).to.equal('OK');
        expect(await redis.get('io:k')).to.equal('value');
        expect(await redis.get('io:missing')).to.equal(null);
        expect(await redis.set('io:k', 'other', 'NX')).to.equal(null);
        expect(await redis.incrby('io:n', 5)).to.equal(5);
        expect(await redis.hset('io:h', { a: '1', b: '2' })).to.equal(2);
        expect(await redis.hgetall('io:h')).to.deep.equal({ a: '1', b: '2' });
        expect(await redis.rpush('io:l', 'x', 'y', 'z')).to.equal(3);
        expect(await redis.lrange('io:l', 0, -1)).to.deep.equal(['x', 'y', 'z']);
        expect(await redis.expire('io:k', 100)).to.equal(1);
        expect(await redis.ttl('io:k')).to.be.within(98, 100);
        await expectReplicasAgree(cluster);
      }));

    it('a pipeline of 500 commands, answered in order', () =>
      withIORedis(async (redis) => {
        const pipeline = redis.pipeline();
        for (let i = 0; i < 125; i++) {
          pipeline.set(`io:p${i}`, String(i));
          pipeline.incr(`io:p${i}`);
          pipeline.get(`io:p${i}`);
          pipeline.rpush('io:plist', String(i));
        }
        const results = await pipeline.exec();
        expect(results).to.have.length(500);
        for (let i = 0; i < 125; i++) {
          expect(results?.[4 * i]).to.deep.equal([null, 'OK']);
          expect(results?.[4 * i + 1]).to.deep.equal([null, i + 1]);
          expect(results?.[4 * i + 2]).to.deep.equal([null, String(i + 1)]);
          expect(results?.[4 * i + 3]).to.deep.equal([null, i + 1]);
        }
        expect(await redis.llen('io:plist')).to.equal(125);
        await expectReplicasAgree(cluster);
      }));

    it('multi/exec, with a runtime error inside the transaction', () =>
      withIORedis(async (redis) => {
        expect(await redis.multi().set('io:m', '1').incr('io:m').get('io:m').exec()).to.deep.equal([
          [null, 'OK'],
          [null, 2],
          [null, '2'],
        ]);
        const mixed = await redis.multi().set('io:ms', 'text').lpush('io:ms', 'x').incr('io:m').exec();
        expect(mixed?.[0]).to.deep.equal([null, 'OK']);
        expect(String(mixed?.[1]?.[0])).to.match(/WRONGTYPE/);
        expect(mixed?.[2]).to.deep.equal([null, 3]);
        await expectReplicasAgree(cluster);
      }));

    it('binary values through Buffers (getBuffer), every byte value and CRLF', () =>
      withIORedis(async (redis) => {
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const random = seededRandom(7);
        const blob = Buffer.from(Array.from({ length: 40_000 }, () => Math.floor(random() * 256)));
        const key = Buffer.from([0x69, 0x6f, 0x3a, 0x00, 0x0d, 0x0a, 0xff]);
        expect(await redis.set(key, all)).to.equal('OK');
        expect((await redis.getBuffer(key))?.equals(all)).to.equal(true);
        expect(await redis.set('io:blob', blob)).to.equal('OK');
        expect((await redis.getBuffer('io:blob'))?.equals(blob)).to.equal(true);
        await redis.hset('io:bh', all, Buffer.from('\r\n$3\r\n'));
        expect((await redis.hgetBuffer('io:bh', all))?.toString()).to.equal('\r\n$3\r\n');
        await expectReplicasAgree(cluster);
      }));

    it('an error reply rejects the command and the connection goes on', () =>
      withIORedis(async (redis) => {
        await redis.set('io:str', 'text');
        const wrongType = await redis.lpush('io:str', 'x').then(
          () => undefined,
          (error: Error) => error,
        );
        expect(wrongType?.name).to.equal('ReplyError');
        expect(wrongType?.message).to.match(/^WRONGTYPE Operation against a key holding the wrong kind of value/);
        const unsupported = await redis.call('CONFIG', 'SET', 'maxmemory', '0').then(
          () => undefined,
          (error: Error) => error,
        );
        expect(unsupported?.message).to.match(/^ERR 'config set' is not allowed through mu-proxy/);
        const unknown = await redis.call('NOSUCHCOMMAND', 'x').then(
          () => undefined,
          (error: Error) => error,
        );
        expect(unknown?.message).to.match(/^ERR unknown command 'NOSUCHCOMMAND'/);
        expect(await redis.ping()).to.equal('PONG');
        expect(await redis.get('io:str')).to.equal('text');
        expect(redis.status).to.equal('ready');
        await expectReplicasAgree(cluster);
      }));

    it('pub/sub: a subscriber connection receives what another publishes, by channel and by pattern', () =>
      withIORedis(async (redis) => {
        const port = (redis.options.port ?? 0) as number;
        const subscriber = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
        subscriber.on('error', () => {});
        await subscriber.connect();
        try {
          const received: string[] = [];
          subscriber.on('message', (channel: string, message: string) => received.push(`${channel}:${message}`));
          subscriber.on('pmessage', (pattern: string, channel: string, message: string) => received.push(`${pattern}|${channel}:${message}`));
          expect(await subscriber.subscribe('io:news', 'io:sport')).to.equal(2);
          expect(await subscriber.psubscribe('io:w*')).to.equal(3);
          expect(await redis.publish('io:news', 'first')).to.equal(1);
          expect(await redis.publish('io:weather', 'rain')).to.equal(1);
          expect(await redis.publish('io:nobody', 'lost')).to.equal(0);
          const deadline = Date.now() + 5000;
          while (received.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
          expect(received).to.deep.equal(['io:news:first', 'io:w*|io:weather:rain']);
          // (ioredis' unsubscribe() without names never settles while patterns remain, against
          // plain redis too: the names are given.)
          await subscriber.unsubscribe('io:news', 'io:sport');
          await subscriber.punsubscribe('io:w*');
          // Out of the subscribed state, the same connection writes through the log again.
          expect(await subscriber.set('io:after-pubsub', 'x')).to.equal('OK');
        } finally {
          subscriber.disconnect();
        }
        await expectReplicasAgree(cluster);
      }));

    it('WATCH with an optimistic retry loop: 4 connections increment one counter, no update lost', () =>
      withIORedis(async (redis) => {
        const port = (redis.options.port ?? 0) as number;
        const workers = await Promise.all(
          Array.from({ length: 4 }, async () => {
            const worker = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
            worker.on('error', () => {});
            await worker.connect();
            return worker;
          }),
        );
        let aborted = 0;
        try {
          await Promise.all(
            workers.map(async (worker) => {
              for (let done = 0; done < 25; ) {
                await worker.watch('io:optimistic');
                const value = Number((await worker.get('io:optimistic')) ?? '0');
                const result = await worker.multi().set('io:optimistic', String(value + 1)).exec();
                if (result === null) aborted++;
                else done++;
              }
            }),
          );
        } finally {
          for (const worker of workers) worker.disconnect();
        }
        expect(await redis.get('io:optimistic')).to.equal('100');
        expect(aborted, 'concurrent transactions must have collided').to.be.greaterThan(0);
        await expectReplicasAgree(cluster);
      }));

    it('BLPOP: a worker blocked on a queue gets what a producer pushes', () =>
      withIORedis(async (redis) => {
        const port = (redis.options.port ?? 0) as number;
        const worker = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
        worker.on('error', () => {});
        await worker.connect();
        try {
          const jobs: Array<[string, string] | null> = [];
          const consuming = (async () => {
            for (let i = 0; i < 3; i++) jobs.push(await worker.blpop('io:jobs', 5));
          })();
          for (const job of ['a', 'b', 'c']) {
            await new Promise((resolve) => setTimeout(resolve, 30));
            await redis.rpush('io:jobs', job);
          }
          await consuming;
          expect(jobs).to.deep.equal([['io:jobs', 'a'], ['io:jobs', 'b'], ['io:jobs', 'c']]);
          expect(await worker.blpop('io:jobs', 0.05)).to.equal(null);
        } finally {
          worker.disconnect();
        }
        await expectReplicasAgree(cluster);
      }));
  });

  describe('node-redis 4', () => {
    it('set/get, multi, sendCommand, Buffers, an error reply, quit', () =>
      atLeader(cluster, async (port) => {
        const client = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: false } });
        const clientErrors: Error[] = [];
        client.on('error', (error: Error) => clientErrors.push(error));
        await client.connect();
        try {
          expect(await client.set('nr:k', 'v')).to.equal('OK');
          expect(await client.get('nr:k')).to.equal('v');
          expect(await client.get('nr:missing')).to.equal(null);
          expect(await client.multi().set('nr:m', '10').incrBy('nr:m', 5).get('nr:m').exec()).to.deep.equal(['OK', 15, '15']);
          expect(await client.sendCommand(['PING'])).to.equal('PONG');
          expect(await client.sendCommand(['RPUSH', 'nr:l', 'a', 'b'])).to.equal(2);
          expect(await client.sendCommand(['LRANGE', 'nr:l', '0', '-1'])).to.deep.equal(['a', 'b']);
          const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
          expect(await client.set('nr:bin', all)).to.equal('OK');
          expect((await client.get(commandOptions({ returnBuffers: true }), 'nr:bin'))?.equals(all)).to.equal(true);
          const failure = await client.lPush('nr:k', 'x').then(
            () => undefined,
            (error: Error) => error,
          );
          expect(failure?.message).to.match(/^WRONGTYPE/);
          expect(await client.ping()).to.equal('PONG');
          expect(client.isReady).to.equal(true);
        } finally {
          if (client.isOpen) await client.quit();
        }
        expect(clientErrors.map(String)).to.deep.equal([]);
        await expectReplicasAgree(cluster);
      }));
  });

  describe('redis-cli', () => {
    it('one-shot commands print what they print against plain redis', () =>
      atLeader(cluster, async (port) => {
        const commands = [
          ['SET', 'cli:k', 'v'],
          ['GET', 'cli:k'],
          ['GET', 'cli:missing'],
          ['APPEND', 'cli:k', ' more'],
          ['INCR', 'cli:k'],
          ['RPUSH', 'cli:l', 'a', 'b c', ''],
          ['LRANGE', 'cli:l', '0', '-1'],
          ['HSET', 'cli:h', 'f', '1'],
          ['HGETALL', 'cli:h'],
          ['ZADD', 'cli:z', '1.5', 'm'],
          ['ZRANGE', 'cli:z', '0', '-1', 'WITHSCORES'],
          ['NOSUCH', 'x'],
          ['EXISTS', 'cli:k', 'cli:l'],
          ['DEL', 'cli:k'],
          ['PING'],
        ];
        const flushPlain = await runProgram(REDIS_CLI, ['-p', String(plain.port), 'FLUSHALL']);
        expect(flushPlain.stdout).to.equal('OK\n');
        for (const argv of commands) {
          const viaProxy = await runProgram(REDIS_CLI, ['-p', String(port), ...argv]);
          const viaPlain = await runProgram(REDIS_CLI, ['-p', String(plain.port), ...argv]);
          expect(viaProxy, argv.join(' ')).to.deep.equal(viaPlain);
        }
        const get = await runProgram(REDIS_CLI, ['-p', String(port), 'GET', 'cli:l']);
        expect(get.stdout).to.match(/^WRONGTYPE/);
        expect((await runProgram(REDIS_CLI, ['-p', String(port), 'SET', 'cli:final', 'v'])).stdout).to.equal('OK\n');
        expect((await runProgram(REDIS_CLI, ['-p', String(port), 'GET', 'cli:final'])).stdout).to.equal('v\n');
        await expectReplicasAgree(cluster);
      }));

    it('--pipe mass insertion (RESP on stdin): every command is applied on every replica', () =>
      atLeader(cluster, async (port) => {
        const run = await runProgram(REDIS_CLI, ['-p', String(port), '--pipe'], { input: massInsertion(100) });
        expect(run.stdout, run.stdout + run.stderr).to.contain('All data transferred');
        const check = await runProgram(REDIS_CLI, ['-p', String(port), 'MGET', 'pipe:0', 'pipe:99', 'pipe:counter']);
        expect(check.stdout).to.equal(`value-0\nvalue-99\n${(99 * 100) / 2}\n`);
        expect((await runProgram(REDIS_CLI, ['-p', String(port), 'LLEN', 'pipe:list'])).stdout).to.equal('100\n');
        await expectReplicasAgree(cluster);
      }));

    // redis-cli --pipe ends with an empty inline line and an ECHO it waits for: both must work.
    it('--pipe mass insertion reports every reply and exits 0, as against plain redis', () =>
      atLeader(cluster, async (port) => {
        for (const target of [plain.port, port]) {
          const run = await runProgram(REDIS_CLI, ['-p', String(target), '--pipe'], { input: massInsertion(100) });
          expect(run.stdout, `port ${target}: ${run.stdout}${run.stderr}`).to.contain('errors: 0, replies: 300');
          expect(run.code).to.equal(0);
          // An error among the commands is counted.
          const withError = await runProgram(REDIS_CLI, ['-p', String(target), '--pipe'], {
            input: resp(['SET', 'pipe:s', 'text']) + resp(['INCR', 'pipe:s']) + resp(['GET', 'pipe:s']),
          });
          expect(withError.stdout).to.contain('errors: 1, replies: 3');
          expect(withError.stderr).to.contain('ERR value is not an integer or out of range');
        }
        await expectReplicasAgree(cluster);
      }));
  });

  describe('redis-benchmark', () => {
    const supported = ['set', 'get', 'incr', 'lpush', 'rpush', 'lpop', 'rpop', 'sadd', 'hset', 'spop', 'zadd', 'lrange_100'];
    // The rest of redis-benchmark's default tests.
    const otherDefaults = ['ping_inline', 'ping_mbulk', 'zpopmin', 'lrange_300', 'lrange_500', 'lrange_600', 'mset'];
    // redis-benchmark -q names its tests in upper case, some with a note.
    const names: Record<string, string> = {
      lrange_100: 'LRANGE_100 (first 100 elements)',
      lrange_300: 'LRANGE_300 (first 300 elements)',
      lrange_500: 'LRANGE_500 (first 500 elements)',
      lrange_600: 'LRANGE_600 (first 600 elements)',
      mset: 'MSET (10 keys)',
    };

    // One run; its output (progress lines split at \r) and the finished tests' rates.
    async function benchmark(port: number, tests: string[] | undefined): Promise<{ code: number | null; output: string; results: Map<string, number> }> {
      const run = await runProgram(REDIS_BENCHMARK, ['-p', String(port), ...(tests === undefined ? [] : ['-t', tests.join(',')]), '-n', '2000', '-q'], { timeoutMs: 40000 });
      const output = `${run.stdout}${run.stderr}`.replace(/\r/g, '\n');
      const moved = /^.*(READONLY|CLUSTERDOWN|TRYAGAIN) mu-proxy.*$/m.exec(output);
      if (moved !== null) throw new Error(moved[0]); // atLeader runs it again
      return { code: run.code, output, results: benchmarkResults(run.stdout) };
    }

    it('with no -t: every default test completes (PING_INLINE: inline commands; SPOP: replicated as its effect)', () =>
      atLeader(cluster, async (port) => {
        const { code, output, results } = await benchmark(port, undefined);
        expect(output, output).to.not.contain('Error from server');
        for (const test of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR', 'LPUSH', 'RPUSH', 'LPOP', 'RPOP', 'SADD', 'HSET', 'SPOP', 'ZADD', 'ZPOPMIN', 'MSET (10 keys)']) {
          expect(results.get(test), `${test}: ${output}`).to.be.greaterThan(0);
        }
        expect(code).to.equal(0);
        await expectReplicasAgree(cluster);
      }));

    it('the common tests, and the other default ones, all complete with a requests-per-second line', () =>
      atLeader(cluster, async (port) => {
        const { code, output, results } = await benchmark(port, [...supported, ...otherDefaults]);
        expect(output, output).to.not.contain('Error from server');
        for (const test of [...supported, ...otherDefaults]) {
          const name = names[test] ?? test.toUpperCase();
          expect(results.get(name), `${name} in ${JSON.stringify([...results.keys()])}`).to.be.greaterThan(0);
        }
        expect(code).to.equal(0);
        await expectReplicasAgree(cluster);
      }));
  });
});
