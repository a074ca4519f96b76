// RedisBackend against a real redis-server (started on a free port), and against small
// fake servers for the failures a real one does not produce on demand.
import { randomBytes } from 'node:crypto';
import net from 'node:net';

import { expect } from 'chai';

import { BackendError, RedisBackend } from './redis_backend.js';
import { RedisServerProcess } from './redis_server_process.js';
import { encodeCommand } from './resp.js';

const cmd = (...argv: Array<Buffer | string>): Buffer => encodeCommand(argv);
const text = (reply: Buffer): string => reply.toString('latin1');

async function expectBackendError(promise: Promise<unknown>, code: BackendError['code']): Promise<BackendError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(BackendError);
    expect((error as BackendError).code, (error as Error).message).to.equal(code);
    return error as BackendError;
  }
  return expect.fail(`expected a BackendError ${code}, but it resolved`);
}

function closeEvents(backend: RedisBackend): Array<Error | undefined> {
  const events: Array<Error | undefined> = [];
  backend.on('close', (error) => events.push(error));
  return events;
}

// A one-connection fake server: `onData` answers what the backend writes.
async function fakeServer(onData: (socket: net.Socket, data: Buffer) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (data) => onData(socket, data));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('RedisBackend (redis-server)', () => {
  let server: RedisServerProcess;
  let backend: RedisBackend;
  const others: RedisBackend[] = [];

  before(async () => {
    server = await RedisServerProcess.start();
    backend = await RedisBackend.connect({ port: server.port });
  });

  after(async () => {
    await Promise.all([backend, ...others].map((each) => each.close()));
    await server.stop();
  });

  beforeEach(async () => {
    expect(text(await backend.send(cmd('FLUSHALL')))).to.equal('+OK\r\n');
  });

  it('returns the exact reply bytes of SET, GET, and GET of a missing key', async () => {
    expect(text(await backend.send(cmd('SET', 'foo', 'bar')))).to.equal('+OK\r\n');
    expect(text(await backend.send(cmd('GET', 'foo')))).to.equal('$3\r\nbar\r\n');
    expect(text(await backend.send(cmd('GET', 'missing')))).to.equal('$-1\r\n');
    expect(text(await backend.send(cmd('SET', 'empty', '')))).to.equal('+OK\r\n');
    expect(text(await backend.send(cmd('GET', 'empty')))).to.equal('$0\r\n\r\n');
  });

  it('returns arrays: LRANGE, an empty LRANGE, HGETALL', async () => {
    expect(text(await backend.send(cmd('RPUSH', 'list', 'a', 'bc', 'def')))).to.equal(':3\r\n');
    expect(text(await backend.send(cmd('LRANGE', 'list', '0', '-1')))).to.equal('*3\r\n$1\r\na\r\n$2\r\nbc\r\n$3\r\ndef\r\n');
    expect(text(await backend.send(cmd('LRANGE', 'nolist', '0', '-1')))).to.equal('*0\r\n');
    expect(text(await backend.send(cmd('HSET', 'hash', 'f1', 'v1', 'f2', 'v2')))).to.equal(':2\r\n');
    expect(text(await backend.send(cmd('HGETALL', 'hash')))).to.equal('*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n');
  });

  it('returns errors with their text', async () => {
    await backend.send(cmd('RPUSH', 'list', 'a'));
    expect(text(await backend.send(cmd('GET', 'list')))).to.equal('-WRONGTYPE Operation against a key holding the wrong kind of value\r\n');
    expect(text(await backend.send(cmd('GET')))).to.equal("-ERR wrong number of arguments for 'get' command\r\n");
    expect(text(await backend.send(cmd('NOSUCH', 'a')))).to.equal("-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n");
    // The connection goes on after an error.
    expect(text(await backend.send(cmd('PING')))).to.equal('+PONG\r\n');
  });

  it('returns EXEC after MULTI as one nested reply, and a nil array for an aborted EXEC', async () => {
    const replies = await backend.sendMany([cmd('MULTI'), cmd('SET', 'k', '1'), cmd('INCR', 'k'), cmd('GET', 'nokey'), cmd('LRANGE', 'k', '0', '1'), cmd('EXEC')]);
    expect(replies.map(text)).to.deep.equal([
      '+OK\r\n',
      '+QUEUED\r\n',
      '+QUEUED\r\n',
      '+QUEUED\r\n',
      '+QUEUED\r\n',
      '*4\r\n+OK\r\n:2\r\n$-1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n',
    ]);

    // WATCH, a write from another connection, then EXEC: nil array (not nil bulk).
    const other = await RedisBackend.connect({ port: server.port });
    others.push(other);
    expect(text(await backend.send(cmd('WATCH', 'k')))).to.equal('+OK\r\n');
    expect(text(await other.send(cmd('SET', 'k', 'changed')))).to.equal('+OK\r\n');
    const aborted = await backend.sendMany([cmd('MULTI'), cmd('SET', 'k', 'mine'), cmd('EXEC')]);
    expect(aborted.map(text)).to.deep.equal(['+OK\r\n', '+QUEUED\r\n', '*-1\r\n']);
    expect(text(await backend.send(cmd('GET', 'k')))).to.equal('$7\r\nchanged\r\n');
  });

  it('round-trips binary values with CRLF and RESP-looking bytes inside', async () => {
    const value = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n$-1\r\n*3\r\n\r\n', 'latin1')]);
    const key = Buffer.from([0, 13, 10, 200]);
    expect(text(await backend.send(cmd('SET', key, value)))).to.equal('+OK\r\n');
    const reply = await backend.send(cmd('GET', key));
    expect(reply.equals(Buffer.concat([Buffer.from(`$${value.length}\r\n`), value, Buffer.from('\r\n')]))).to.equal(true);
  });

  it('round-trips a 20 MB value', async () => {
    const value = randomBytes(20 * 1024 * 1024);
    value.write('\r\n', 12345, 'latin1');
    expect(text(await backend.send(cmd('SET', 'big', value)))).to.equal('+OK\r\n');
    const [length, reply, after] = await backend.sendMany([cmd('STRLEN', 'big'), cmd('GET', 'big'), cmd('PING')]);
    expect(text(length!)).to.equal(`:${value.length}\r\n`);
    const header = `$${value.length}\r\n`;
    expect(reply!.length).to.equal(header.length + value.length + 2);
    expect(text(reply!.subarray(0, header.length))).to.equal(header);
    expect(reply!.subarray(header.length, header.length + value.length).equals(value)).to.equal(true);
    expect(text(reply!.subarray(-2))).to.equal('\r\n');
    expect(text(after!)).to.equal('+PONG\r\n');
  });

  it('pipelines 50,000 INCRs through sendMany, in order', async () => {
    const commands = Array.from({ length: 50_000 }, () => cmd('INCR', 'counter'));
    const promise = backend.sendMany(commands);
    expect(backend.pending).to.equal(50_000);
    const replies = await promise;
    expect(backend.pending).to.equal(0);
    expect(replies).to.have.length(50_000);
    for (let i = 0; i < replies.length; i++) {
      if (text(replies[i]!) !== `:${i + 1}\r\n`) expect.fail(`reply ${i} is ${JSON.stringify(text(replies[i]!))}`);
    }
    expect(text(await backend.send(cmd('GET', 'counter')))).to.equal('$5\r\n50000\r\n');
  });

  it('matches replies first-in first-out across interleaved send and sendMany calls', async () => {
    const promises: Array<Promise<string[]>> = [];
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 0) promises.push(backend.sendMany([cmd('INCR', 'n'), cmd('INCR', 'n')]).then((replies) => replies.map(text)));
      else promises.push(backend.send(cmd('INCR', 'n')).then((reply) => [text(reply)]));
    }
    const flat = (await Promise.all(promises)).flat();
    expect(flat).to.deep.equal(flat.map((_, i) => `:${i + 1}\r\n`));
    expect(await backend.sendMany([])).to.deep.equal([]);
  });

  it('keeps every command, in order, while the backend does not read (backpressure)', async () => {
    const value = Buffer.alloc(64 * 1024, 'v');
    server.kill('SIGSTOP');
    const promises: Array<Promise<Buffer>> = [];
    try {
      // 32 MB: far more than the socket buffers hold.
      for (let i = 0; i < 500; i++) promises.push(backend.send(cmd('APPEND', 'grow', value)));
      promises.push(backend.send(cmd('STRLEN', 'grow')));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(backend.pending).to.equal(501);
    } finally {
      server.kill('SIGCONT');
    }
    const replies = (await Promise.all(promises)).map(text);
    expect(replies.slice(0, 500)).to.deep.equal(Array.from({ length: 500 }, (_, i) => `:${(i + 1) * value.length}\r\n`));
    expect(replies[500]).to.equal(`:${500 * value.length}\r\n`);
  });

  it('close(): outstanding sends and later ones reject with CLOSED; close is emitted once', async () => {
    const own = await RedisBackend.connect({ port: server.port, name: 'closing' });
    const events = closeEvents(own);
    const blocked = own.send(cmd('BLPOP', 'never', '0'));
    const behind = own.sendMany([cmd('PING'), cmd('PING')]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(own.pending).to.equal(3);
    const checks = [expectBackendError(blocked, 'CLOSED'), expectBackendError(behind, 'CLOSED')];
    await own.close();
    expect(own.closed).to.equal(true);
    expect(own.pending).to.equal(0);
    const [error] = await Promise.all(checks);
    expect(error!.message).to.contain('closing: closed by close()');
    await expectBackendError(own.send(cmd('PING')), 'CLOSED');
    await expectBackendError(own.sendMany([cmd('PING')]), 'CLOSED');
    await own.close(); // again: nothing more happens
    expect(events).to.deep.equal([undefined]);
    // The server itself is fine.
    expect(text(await backend.send(cmd('PING')))).to.equal('+PONG\r\n');
  });

  it('rejects with CONNECT when nothing listens', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const error = await expectBackendError(RedisBackend.connect({ port, name: 'nowhere' }), 'CONNECT');
    expect(error.message).to.match(/nowhere.*ECONNREFUSED/);
  });
});

describe('RedisBackend when the redis-server is killed', () => {
  let server: RedisServerProcess | undefined;
  after(async () => server?.stop());

  it('rejects every outstanding and later send with CLOSED and emits close once (SIGKILL)', async () => {
    const killed = await RedisServerProcess.start();
    server = killed;
    const backend = await RedisBackend.connect({ port: killed.port });
    const events = closeEvents(backend);
    expect(text(await backend.send(cmd('SET', 'a', '1')))).to.equal('+OK\r\n');
    // BLPOP holds every later reply back, so all of these are outstanding at the kill.
    const outstanding: Array<Promise<unknown>> = [backend.send(cmd('BLPOP', 'never', '0'))];
    for (let i = 0; i < 100; i++) outstanding.push(backend.send(cmd('INCR', 'a')));
    outstanding.push(backend.sendMany([cmd('GET', 'a'), cmd('PING')]));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backend.pending).to.equal(103);

    killed.kill('SIGKILL');
    const settled = await Promise.allSettled(outstanding);
    for (const result of settled) {
      expect(result.status).to.equal('rejected');
      const reason = (result as PromiseRejectedResult).reason as BackendError;
      expect(reason).to.be.instanceOf(BackendError);
      expect(reason.code).to.equal('CLOSED');
    }
    expect(await killed.exited).to.equal(null);
    expect(backend.closed).to.equal(true);
    expect(backend.pending).to.equal(0);
    await expectBackendError(backend.send(cmd('PING')), 'CLOSED');
    await backend.close();
    expect(events).to.have.length(1);
    expect(events[0]).to.be.instanceOf(BackendError);
  });
});

describe('RedisBackend connect timeout', () => {
  let server: RedisServerProcess | undefined;
  const fillers: net.Socket[] = [];
  after(async () => {
    for (const socket of fillers) socket.destroy();
    await server?.stop();
  });

  it('rejects with CONNECT when the backend does not accept in time', async () => {
    // A stopped redis-server with a backlog of 1: once its accept queue is full, the kernel
    // drops further SYNs, so a connect neither succeeds nor fails.
    const stopped = await RedisServerProcess.start({ extraArgs: ['--tcp-backlog', '1'] });
    server = stopped;
    stopped.kill('SIGSTOP');
    for (let i = 0; i < 4; i++) {
      const socket = net.connect({ port: stopped.port, host: '127.0.0.1' });
      socket.on('error', () => {});
      fillers.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    const error = await expectBackendError(RedisBackend.connect({ port: stopped.port, connectTimeoutMs: 300 }), 'CONNECT');
    expect(error.message).to.contain('timed out after 300 ms');
    expect(Date.now() - started).to.be.within(250, 3000);
  });
});

describe('RedisBackend with a misbehaving backend (fake server)', () => {
  it('malformed bytes: outstanding sends reject with PROTOCOL, later ones with CLOSED, close emitted once', async () => {
    const fake = await fakeServer((socket) => socket.write('+OK\r\n?garbage\r\n'));
    try {
      const backend = await RedisBackend.connect({ port: fake.port });
      const events = closeEvents(backend);
      const first = backend.send(cmd('PING'));
      const second = backend.send(cmd('PING'));
      const third = backend.sendMany([cmd('PING'), cmd('PING')]);
      // The whole chunk is suspect: even the well-formed reply ahead of the garbage is not delivered.
      const error = await expectBackendError(first, 'PROTOCOL');
      expect(error.message).to.contain('0x3f');
      await expectBackendError(second, 'PROTOCOL');
      await expectBackendError(third, 'PROTOCOL');
      const later = await expectBackendError(backend.send(cmd('PING')), 'CLOSED');
      expect(later.message).to.contain('malformed reply');
      expect(backend.closed).to.equal(true);
      expect(events).to.have.length(1);
      expect((events[0] as BackendError).code).to.equal('PROTOCOL');
      await backend.close();
      expect(events).to.have.length(1);
    } finally {
      await fake.close();
    }
  });

  it('a reply with no command outstanding is a PROTOCOL failure', async () => {
    const fake = await fakeServer((socket) => socket.write('+OK\r\n+EXTRA\r\n'));
    try {
      const backend = await RedisBackend.connect({ port: fake.port });
      const events = closeEvents(backend);
      expect(text(await backend.send(cmd('PING')))).to.equal('+OK\r\n');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(backend.closed).to.equal(true);
      expect(events).to.have.length(1);
      expect((events[0] as BackendError).code).to.equal('PROTOCOL');
      expect((events[0] as BackendError).message).to.contain('no command outstanding');
    } finally {
      await fake.close();
    }
  });

  it('the backend closing the connection rejects what is outstanding with CLOSED', async () => {
    const fake = await fakeServer((socket) => socket.end(':1\r\n'));
    try {
      const backend = await RedisBackend.connect({ port: fake.port });
      const events = closeEvents(backend);
      const answered = backend.send(cmd('INCR', 'x'));
      const unanswered = backend.send(cmd('INCR', 'x'));
      expect(text(await answered)).to.equal(':1\r\n');
      await expectBackendError(unanswered, 'CLOSED');
      expect(events).to.have.length(1);
    } finally {
      await fake.close();
    }
  });

  it('writes each sendMany in one socket write, and the commands of one event-loop turn together', async () => {
    const received: Buffer[] = [];
    const fake = await fakeServer((socket, data) => {
      received.push(data);
      // One +OK per command (each command here is 14 bytes: *1\r\n$4\r\nPING\r\n).
      socket.write('+OK\r\n'.repeat(data.length / 14));
    });
    try {
      const backend = await RedisBackend.connect({ port: fake.port });
      const replies = await backend.sendMany([cmd('PING'), cmd('PING'), cmd('PING')]);
      expect(replies.map(text)).to.deep.equal(['+OK\r\n', '+OK\r\n', '+OK\r\n']);
      expect(received).to.have.length(1);
      expect(received[0]!.length).to.equal(42);
      const singles = await Promise.all([backend.send(cmd('PING')), backend.send(cmd('PING'))]);
      expect(singles.map(text)).to.deep.equal(['+OK\r\n', '+OK\r\n']);
      expect(received).to.have.length(2);
      await backend.close();
    } finally {
      await fake.close();
    }
  });
});
