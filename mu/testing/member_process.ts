// One cluster member as a process, driven by a test or benchmark through JSON lines:
// requests on stdin, replies and events on stdout (logs go to stderr).
//
//   node --import tsx mu/testing/member_process.ts --config cluster.json --id 1 [--poll-us N]
//
// Requests (each may carry a "tag" echoed in its reply):
//   {"op":"status"}                               -> {"event":"status","status":{...}}
//   {"op":"applied"}                              -> {"event":"applied","items":["index:data",...]}
//   {"op":"burst","prefix":"a","count":N,"chunk":C}
//        proposes N commands "a-0".."a-(N-1)", C per event-loop turn, without waiting;
//        each outcome is printed: {"event":"acked","data":"a-7","index":12} or
//        {"event":"rejected","data":"a-7","code":"NOT_LEADER"}, then {"event":"burst-done"}
//   {"op":"latency","count":N,"bytes":B}          -> one proposal at a time, N times:
//        {"event":"latency","samplesUs":[...]}
//   {"op":"throughput","count":N,"bytes":B,"window":W} -> N proposals, at most W unsettled:
//        {"event":"throughput","seconds":s,"acked":n}
import readline from 'node:readline';

import { loadClusterConfig } from '../config.js';
import { ClusterMember } from '../member.js';
import { ProposalError } from '../replica.js';

function argument(name: string): string {
  const at = process.argv.indexOf(name);
  const value = at >= 0 ? process.argv[at + 1] : undefined;
  if (value === undefined) {
    console.error(`usage: member_process.ts --config <file> --id <n> (missing ${name})`);
    process.exit(2);
  }
  return value;
}

function send(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const config = loadClusterConfig(argument('--config'));
const nodeId = Number(argument('--id'));
const pollAt = process.argv.indexOf('--poll-us');
const pollAfterSubmitUs = pollAt >= 0 ? Number(process.argv[pollAt + 1]) : undefined;
const member = await ClusterMember.start(config, nodeId, {
  log: (line) => {
    console.error(`[replica ${nodeId}] ${line}`);
    send({ event: 'log', line });
  },
  ...(pollAfterSubmitUs === undefined ? {} : { tuning: { pollAfterSubmitUs } }),
});
// Kept as views and turned into "index:data" strings only when asked: the listener runs
// on the path the latency benchmark measures.
const applied: Array<{ index: number; data: Buffer }> = [];
member.replica.on('applied', (entry) => {
  for (const command of entry.commands) applied.push({ index: entry.index, data: command.data });
});
member.replica.on('role', (change) => send({ event: 'role', ...change }));
send({ event: 'started', nodeId, incarnation: member.incarnation });

async function burst(prefix: string, count: number, chunk: number): Promise<void> {
  const outcomes: Promise<void>[] = [];
  for (let start = 0; start < count; start += chunk) {
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      const data = `${prefix}-${i}`;
      outcomes.push(
        member.replica.propose(Buffer.from(data)).then(
          (index) => send({ event: 'acked', data, index }),
          (error: unknown) => send({ event: 'rejected', data, code: error instanceof ProposalError ? error.code : String(error) }),
        ),
      );
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(outcomes);
  send({ event: 'burst-done', prefix });
}

async function latency(count: number, bytes: number): Promise<number[]> {
  const samplesUs: number[] = [];
  const payload = Buffer.alloc(bytes, 0x5a);
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    await member.replica.propose(payload);
    samplesUs.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  return samplesUs;
}

async function throughput(count: number, bytes: number, window: number): Promise<{ seconds: number; acked: number }> {
  const payload = Buffer.alloc(bytes, 0x5a);
  let proposed = 0;
  let settled = 0;
  let acked = 0;
  const started = process.hrtime.bigint();
  const lowWater = Math.floor(window / 2);
  await new Promise<void>((resolve) => {
    const onSettled = () => {
      settled++;
      if (settled === count) resolve();
      else if (proposed - settled === lowWater) setImmediate(refill);
    };
    // Top the window up once per event-loop turn: the proposals of one turn share entries.
    const refill = () => {
      while (proposed < count && proposed - settled < window) {
        proposed++;
        member.replica.propose(payload).then(() => {
          acked++;
          onSettled();
        }, onSettled);
      }
    };
    refill();
  });
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, acked };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let request: {
    op?: string;
    tag?: unknown;
    prefix?: string;
    count?: number;
    chunk?: number;
    bytes?: number;
    window?: number;
  };
  try {
    request = JSON.parse(line) as typeof request;
  } catch {
    send({ event: 'error', message: `not JSON: ${line}` });
    return;
  }
  const tag = request.tag;
  switch (request.op) {
    case 'status':
      send({ event: 'status', tag, status: member.replica.status() });
      break;
    case 'applied':
      send({ event: 'applied', tag, items: applied.map((item) => `${item.index}:${item.data.toString()}`) });
      break;
    case 'burst':
      void burst(request.prefix ?? 'c', request.count ?? 1, request.chunk ?? 1);
      break;
    case 'latency':
      latency(request.count ?? 1000, request.bytes ?? 64).then(
        (samplesUs) => send({ event: 'latency', tag, samplesUs }),
        (error: unknown) => send({ event: 'error', tag, message: String(error) }),
      );
      break;
    case 'throughput':
      throughput(request.count ?? 100000, request.bytes ?? 64, request.window ?? 1024).then(
        (result) => send({ event: 'throughput', tag, ...result }),
        (error: unknown) => send({ event: 'error', tag, message: String(error) }),
      );
      break;
    default:
      send({ event: 'error', tag, message: `unknown op ${String(request.op)}` });
  }
});
// The parent closing stdin ends the process cleanly.
lines.on('close', () => {
  void member.stop().then(() => process.exit(0));
});
