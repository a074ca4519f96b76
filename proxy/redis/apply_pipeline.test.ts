// The apply pipeline's state-transfer edges, with a stand-in for the engine (an emitter of
// applied entries) and real redis-servers: what a snapshot must carry besides the keys,
// and what watchers must hear when this replica's backend stops following the log.
import { EventEmitter } from 'node:events';
import net from 'node:net';

import { expect } from 'chai';
import RedisParser from 'redis-parser';

import { RedisBackend } from '../../adapters/redis/redis_backend.js';
import { RedisServerProcess } from '../../adapters/redis/redis_server_process.js';
import { encodeCommand } from '../../adapters/redis/resp.js';
import type { AppliedEntry, Replica } from '../../mu/replica.js';
import { ApplyPipeline } from './apply_pipeline.js';
import { BackendChannel } from './backend_channel.js';
import { CommandTable } from './command_table.js';
import { KeyWatchRegistry } from './key_watch.js';
import { encodeLogCommand, LogCommandKind, splitLogCommand } from './log_command.js';
import { fetchSnapshot, streamSnapshot } from './state_transfer.js';

const command = (...argv: Array<string | Buffer>) => encodeCommand(argv);

// Enough of a Replica for the pipeline: it only listens to 'applied' and reads nodeId.
function engineStandIn(nodeId: number): EventEmitter & { nodeId: number } {
  return Object.assign(new EventEmitter(), { nodeId });
}

async function commandTable(backend: RedisBackend): Promise<CommandTable> {
  let value: unknown;
  const parser = new RedisParser({
    returnReply: (reply: unknown) => {
      value = reply;
    },
    returnError: (error: Error) => {
      throw error;
    },
  });
  parser.execute(await backend.send(command('COMMAND')));
  return CommandTable.fromCommandReply(value);
}

describe('ApplyPipeline and state transfer', function () {
  this.timeout(30000);
  const servers: RedisServerProcess[] = [];
  const backends: RedisBackend[] = [];
  let table: CommandTable;

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const server = await RedisServerProcess.start();
      servers.push(server);
      backends.push(await RedisBackend.connect({ port: server.port }));
    }
    table = await commandTable(backends[0] as RedisBackend);
  });
  after(async () => {
    for (const backend of backends) await backend.close();
    for (const server of servers) await server.stop();
  });

  it('a snapshot taken while a large command is half assembled carries its pieces, so the recipient applies it too', async () => {
    const [donorBackend, recipientBackend] = backends as [RedisBackend, RedisBackend];
    const donorEngine = engineStandIn(1);
    const donorChannel = new BackendChannel(donorBackend);
    const donor = new ApplyPipeline(donorEngine as unknown as Replica, donorChannel, new KeyWatchRegistry(table));
    const value = Buffer.alloc(3000, 'x');
    const whole = encodeLogCommand({ kind: LogCommandKind.commands, origin: 0, requestId: 77, db: 0, parts: [command('SET', 'big', value)] });
    const pieces = splitLogCommand(whole, 0, 77, 1024);
    expect(pieces.length).to.be.above(2);
    const entry = (index: number, data: Buffer): AppliedEntry => ({ index, nextPosition: index * 4096, commands: [{ origin: 0, sequence: index, data }] });
    donorEngine.emit('applied', entry(1, encodeLogCommand({ kind: LogCommandKind.commands, origin: 0, requestId: 76, db: 0, parts: [command('SET', 'small', '1')] })));
    donorEngine.emit('applied', entry(2, pieces[0] as Buffer));
    const cursor = await donor.holdForSnapshot();
    expect(cursor?.nextIndex).to.equal(3);

    // The donor's frames, served to fetchSnapshot as MU PEER + MU SNAPSHOT would be.
    const frames: Buffer[] = [];
    await streamSnapshot(donorChannel, cursor as NonNullable<typeof cursor>, async (frame) => void frames.push(frame));
    donor.release();
    const fake = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write(Buffer.concat([Buffer.from('+OK\r\n'), ...frames])));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const snapshot = await fetchSnapshot({
      host: '127.0.0.1',
      port: (fake.address() as net.AddressInfo).port,
      greeting: command('PING'),
      backend: recipientBackend,
      timeoutMs: 5000,
    });
    fake.close();

    const recipientEngine = engineStandIn(2);
    const recipient = new ApplyPipeline(recipientEngine as unknown as Replica, new BackendChannel(recipientBackend), new KeyWatchRegistry(table));
    recipient.restored(snapshot);
    for (let i = 1; i < pieces.length; i++) {
      donorEngine.emit('applied', entry(2 + i, pieces[i] as Buffer));
      recipientEngine.emit('applied', entry(2 + i, pieces[i] as Buffer));
    }
    const [donorValue, recipientValue, small] = await Promise.all([
      donorBackend.send(command('STRLEN', 'big')),
      recipientBackend.send(command('STRLEN', 'big')),
      recipientBackend.send(command('GET', 'small')),
    ]);
    expect(donorValue.toString()).to.equal(':3000\r\n');
    expect(recipientValue.toString()).to.equal(':3000\r\n');
    expect(small.toString()).to.equal('$1\r\n1\r\n');
  });

  it('watchers hear that every key may have changed when the backend stops following the log, and when it is restored', async () => {
    const engine = engineStandIn(1);
    const watches = new KeyWatchRegistry(table);
    const pipeline = new ApplyPipeline(engine as unknown as Replica, new BackendChannel(backends[0] as RedisBackend), watches);
    let heard = 0;
    const watcher = { touched: () => void heard++ };
    watches.watch(watcher, 0, [Buffer.from('watched')]);
    // The writes applied while the replica is out come in with the snapshot, not the log.
    pipeline.lost('test: the backend restarted empty');
    expect(heard).to.equal(1);
    watches.unwatch(watcher);
    watches.watch(watcher, 0, [Buffer.from('watched')]);
    pipeline.restored({ nextIndex: 10, position: 0 });
    expect(heard).to.equal(2);
    watches.unwatch(watcher);
  });
});
