// The client of multi-host-test.sh: plain Node (no tsx, no project imports) so that it
// starts quickly under emulation and shares no code with what it checks.
//
//   node multi-host-client.mjs write  --targets H:P,H:P,H:P --acked FILE --stop FILE
//   node multi-host-client.mjs verify --targets H:P,H:P,H:P --acked FILE
//
// write: SET mh:<n> v<n> for n = 1, 2, ... one at a time, through one replica; on an error
// or a timeout it moves to the next replica and retries the same n (so every n is written
// at least once; an unanswered attempt may have been applied, which is allowed). Each
// acknowledged n is appended to the acked file as it comes. Every 10th write also reads
// back an earlier acknowledged key through the same proxy: a wrong value is a violation
// (exit 1). Stops when the stop file appears, printing a summary line.
// verify: reads every acknowledged key (through any replica that answers) and exits 1
// unless each holds its value: nothing acknowledged may be lost.
import fs from 'node:fs';
import net from 'node:net';

const request_timeout_ms = 8000; // generous: everything runs ~100x slower under TCG
const retry_pause_ms = 200;

function option(name) {
  const at = process.argv.indexOf(name);
  if (at < 0 || process.argv[at + 1] === undefined) throw new Error(`missing ${name}`);
  return process.argv[at + 1];
}

function encode(argv) {
  return `*${argv.length}\r\n${argv.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

// One RESP2 reply from `buffer` at `start`: [value, next] or undefined when incomplete.
// Errors come back as { error }; arrays are not needed here.
function parseReply(buffer, start) {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd < 0) return undefined;
  const line = buffer.toString('latin1', start + 1, lineEnd);
  switch (buffer[start]) {
    case 0x2b: return [line, lineEnd + 2]; // +
    case 0x2d: return [{ error: line }, lineEnd + 2]; // -
    case 0x3a: return [Number(line), lineEnd + 2]; // :
    case 0x24: { // $
      const length = Number(line);
      if (length < 0) return [null, lineEnd + 2];
      if (buffer.length < lineEnd + 2 + length + 2) return undefined;
      return [buffer.toString('utf8', lineEnd + 2, lineEnd + 2 + length), lineEnd + 2 + length + 2];
    }
    default: throw new Error(`unexpected reply byte ${buffer[start]}`);
  }
}

// A connection that sends batches of commands and resolves with their replies.
class Connection {
  static open(target) {
    const [host, port] = target.split(':');
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: Number(port) });
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`connect to ${target} timed out`)); }, request_timeout_ms);
      socket.once('connect', () => { clearTimeout(timer); resolve(new Connection(socket, target)); });
      socket.once('error', (error) => { clearTimeout(timer); reject(error); });
    });
  }

  constructor(socket, target) {
    this.socket = socket;
    this.target = target;
    this.buffer = Buffer.alloc(0);
    this.waiting = undefined;
    socket.on('data', (chunk) => { this.buffer = Buffer.concat([this.buffer, chunk]); this.drain(); });
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error(`${target} closed the connection`)));
  }

  send(commands) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`${this.target} did not answer within ${request_timeout_ms} ms`)), request_timeout_ms);
      this.waiting = { count: commands.length, replies: [], resolve, reject, timer };
      this.socket.write(commands.map(encode).join(''));
      this.drain();
    });
  }

  drain() {
    const waiting = this.waiting;
    if (waiting === undefined) return;
    let offset = 0;
    for (let parsed; waiting.replies.length < waiting.count && (parsed = parseReply(this.buffer, offset)) !== undefined;) {
      waiting.replies.push(parsed[0]);
      offset = parsed[1];
    }
    this.buffer = this.buffer.subarray(offset);
    if (waiting.replies.length === waiting.count) {
      clearTimeout(waiting.timer);
      this.waiting = undefined;
      waiting.resolve(waiting.replies);
    }
  }

  fail(error) {
    const waiting = this.waiting;
    this.waiting = undefined;
    this.socket.destroy();
    if (waiting !== undefined) {
      clearTimeout(waiting.timer);
      waiting.reject(error);
    }
  }

  close() { this.socket.destroy(); }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const targets = option('--targets').split(',');
const ackedPath = option('--acked');

async function write() {
  const stopPath = option('--stop');
  const acked = fs.openSync(ackedPath, 'a');
  const summary = { acknowledged: 0, errors: 0, switches: 0, reads_checked: 0, longest_gap_ms: 0 };
  const errorKinds = new Map();
  let targetIndex = 0;
  let connection;
  let lastAckAt = Date.now();
  for (let n = 1; !fs.existsSync(stopPath);) {
    try {
      connection ??= await Connection.open(targets[targetIndex]);
      const commands = [['SET', `mh:${n}`, `v${n}`]];
      const readBack = n > 10 && n % 10 === 0 ? n - 10 : undefined;
      if (readBack !== undefined) commands.push(['GET', `mh:${readBack}`]);
      const replies = await connection.send(commands);
      const failed = replies.find((reply) => reply !== null && typeof reply === 'object');
      if (failed !== undefined) throw new Error(`${connection.target}: -${failed.error}`);
      if (replies[0] !== 'OK') throw new Error(`${connection.target}: SET answered ${JSON.stringify(replies[0])}`);
      fs.writeSync(acked, `${n}\n`);
      summary.acknowledged++;
      const now = Date.now();
      summary.longest_gap_ms = Math.max(summary.longest_gap_ms, now - lastAckAt);
      lastAckAt = now;
      if (readBack !== undefined) {
        if (replies[1] !== `v${readBack}`) {
          console.log(`VIOLATION: mh:${readBack} read ${JSON.stringify(replies[1])} through ${connection.target} after it was acknowledged as v${readBack}`);
          process.exit(1);
        }
        summary.reads_checked++;
      }
      n++;
    } catch (error) {
      summary.errors++;
      const kind = String(error.message).replace(/[0-9]+/g, '#').slice(0, 120);
      // Each kind of error once, with the time: enough to follow a failover.
      if (!errorKinds.has(kind)) console.log(`client ${new Date().toISOString()}: ${error.message}; moving to the next replica`);
      errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
      connection?.close();
      connection = undefined;
      targetIndex = (targetIndex + 1) % targets.length;
      summary.switches++;
      await sleep(retry_pause_ms);
    }
  }
  connection?.close();
  fs.closeSync(acked);
  console.log(`client summary ${JSON.stringify({ ...summary, errors_by_kind: Object.fromEntries(errorKinds) })}`);
}

async function verify() {
  const numbers = fs.readFileSync(ackedPath, 'utf8').split('\n').filter((line) => line !== '').map(Number);
  if (numbers.length === 0) throw new Error(`${ackedPath} lists no acknowledged writes: nothing was tested`);
  const batch_size = 200;
  let checked = 0;
  for (let at = 0; at < numbers.length; at += batch_size) {
    const batch = numbers.slice(at, at + batch_size);
    let replies;
    for (let attempt = 0; replies === undefined; attempt++) {
      const target = targets[attempt % targets.length];
      let connection;
      try {
        connection = await Connection.open(target);
        replies = await connection.send(batch.map((n) => ['GET', `mh:${n}`]));
        connection.close();
        const failed = replies.find((reply) => reply !== null && typeof reply === 'object');
        if (failed !== undefined) throw new Error(`-${failed.error}`);
      } catch (error) {
        connection?.close();
        replies = undefined;
        if (attempt >= 3 * targets.length) throw new Error(`cannot read back through any replica: ${error.message}`);
        await sleep(500);
      }
    }
    batch.forEach((n, i) => {
      if (replies[i] !== `v${n}`) {
        console.log(`LOST: mh:${n} was acknowledged as v${n} and reads ${JSON.stringify(replies[i])}`);
        process.exitCode = 1;
      }
    });
    checked += batch.length;
  }
  console.log(`verify: ${checked} acknowledged writes read back${process.exitCode === 1 ? ' WITH LOSSES' : ', none lost'}`);
}

const command = process.argv[2];
if (command === 'write') await write();
else if (command === 'verify') await verify();
else throw new Error('usage: multi-host-client.mjs write|verify --targets ... --acked FILE [--stop FILE]');
