// RedisServerProcess: a real redis-server on a free port, its temporary directory, and a
// start-up failure reported with redis' own log line.
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { expect } from 'chai';

import { RedisBackend } from './redis_backend.js';
import { RedisServerProcess } from './redis_server_process.js';
import { encodeCommand } from './resp.js';

const exists = (p: string): Promise<boolean> =>
  fs.access(p).then(
    () => true,
    () => false,
  );

async function expectRejects(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(Error);
    return error as Error;
  }
  return expect.fail('expected start() to reject');
}

describe('RedisServerProcess', () => {
  const started: RedisServerProcess[] = [];
  let parent: string;

  before(async () => {
    parent = await fs.mkdtemp(path.join(os.tmpdir(), 'mu-redis-test-'));
  });

  after(async () => {
    await Promise.all(started.map((server) => server.stop()));
    await fs.rm(parent, { recursive: true, force: true });
  });

  it('starts on a free port, answers PING through RedisBackend, and stop() removes its temporary directory', async () => {
    const server = await RedisServerProcess.start({ dir: parent });
    started.push(server);
    expect(server.port).to.be.within(1, 65535);
    expect(server.pid).to.be.greaterThan(0);
    expect(() => process.kill(server.pid, 0)).not.to.throw();
    expect(path.dirname(server.dir)).to.equal(parent);
    expect(await exists(server.dir)).to.equal(true);

    const backend = await RedisBackend.connect({ port: server.port });
    try {
      expect((await backend.send(encodeCommand(['PING']))).toString()).to.equal('+PONG\r\n');
      const [dir, policy, save, appendonly] = await backend.sendMany([
        encodeCommand(['CONFIG', 'GET', 'dir']),
        encodeCommand(['CONFIG', 'GET', 'maxmemory-policy']),
        encodeCommand(['CONFIG', 'GET', 'save']),
        encodeCommand(['CONFIG', 'GET', 'appendonly']),
      ]);
      // redis resolves the directory it is given, so compare with the real path.
      const realDir = await fs.realpath(server.dir);
      expect(dir!.toString()).to.equal(`*2\r\n$3\r\ndir\r\n$${Buffer.byteLength(realDir)}\r\n${realDir}\r\n`);
      expect(policy!.toString()).to.equal('*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n');
      expect(save!.toString()).to.equal('*2\r\n$4\r\nsave\r\n$0\r\n\r\n');
      expect(appendonly!.toString()).to.equal('*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n');
    } finally {
      await backend.close();
    }
    expect(await fs.readFile(server.logPath, 'utf8')).to.contain('Ready to accept connections');

    await server.stop();
    expect(await server.exited).to.equal(0);
    expect(await exists(server.dir)).to.equal(false);
    expect(() => process.kill(server.pid, 0)).to.throw();
    await server.stop(); // idempotent
  });

  it('starts two servers side by side on different free ports, extra arguments applied', async () => {
    const [a, b] = await Promise.all([
      RedisServerProcess.start({ extraArgs: ['--maxmemory', '64mb'] }),
      RedisServerProcess.start(),
    ]);
    started.push(a, b);
    expect(a.port).not.to.equal(b.port);
    const backend = await RedisBackend.connect({ port: a.port });
    try {
      const reply = await backend.send(encodeCommand(['CONFIG', 'GET', 'maxmemory']));
      expect(reply.toString()).to.equal(`*2\r\n$9\r\nmaxmemory\r\n$8\r\n${64 * 1024 * 1024}\r\n`);
    } finally {
      await backend.close();
    }
  });

  it('start() rejects with redis own log line when an extra argument is bad, and leaves nothing behind', async () => {
    const error = await expectRejects(RedisServerProcess.start({ dir: parent, extraArgs: ['--no-such-directive', 'x'] }));
    expect(error.message).to.contain('exited (code 1) before answering');
    expect(error.message).to.contain('Bad directive or wrong number of arguments');
    expect(error.message).to.contain("'no-such-directive \"x\"'");
    const left = (await fs.readdir(parent)).filter((name) => name.startsWith('mu-redis-'));
    // Only the first test's directory could be here, and stop() removed it.
    expect(left).to.deep.equal([]);
  });

  it('start() on a port already in use rejects with the reason from the log', async () => {
    // The holder accepts and never answers, so start()'s PING must not wait on it forever.
    const accepted: net.Socket[] = [];
    const holder = net.createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const error = await expectRejects(RedisServerProcess.start({ port }));
      expect(error.message).to.contain(`port ${port}`);
      expect(error.message).to.contain('Address already in use');
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('kill() delivers a signal; stop() still cleans up after a SIGKILL', async () => {
    const server = await RedisServerProcess.start();
    started.push(server);
    server.kill('SIGKILL');
    expect(await server.exited).to.equal(null);
    await server.stop();
    expect(await exists(server.dir)).to.equal(false);
  });
});
