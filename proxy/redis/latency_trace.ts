// Opt-in timing of a write's stages inside one proxy process, to find where a request's
// time goes (the benchmarks see only the total). Off unless MU_TRACE_LATENCY names a file
// prefix; then every write proposed here is stamped at each stage, and at exit a process
// that traced any write it led writes `<prefix>.<pid>`: for each step between stages, the
// median, p90 and p99 in microseconds. Costs a clock read per stage when on, one
// undefined check when off.
//
// Stages, in order: the client's bytes arrived (the session's data event); the command
// was proposed; the replica's flush began; the batch was handed to the engine; the
// engine's events reached the main thread; the apply pipeline took the command; sent it
// to the local backend; the backend replied; the reply was handed to the client's socket
// (written at the end of the tick).
//
//   MU_TRACE_LATENCY=/tmp/trace MU_TRACE_LATENCY_COUNT=5500 npm run bench:redis -- --systems proxy1
import fs from 'node:fs';

export const traceStages = ['arrived', 'proposed', 'flushed', 'submitted', 'delivered', 'applied', 'sent', 'replied', 'answered'] as const;
export type TraceStage = (typeof traceStages)[number];

// How many writes to trace, the first ones (MU_TRACE_LATENCY_COUNT; say the warm-up plus
// a benchmark's single-client phase, to leave its many-client phases out).
const keptRequests = Number(process.env['MU_TRACE_LATENCY_COUNT'] ?? 200_000);

export class LatencyTrace {
  // The arrival time of the data being dispatched now: a request proposed while it is
  // dispatched arrived then.
  private arrivalNs = 0n;
  private readonly open = new Map<number, bigint[]>();
  private readonly finished: bigint[][] = [];

  // Writes the summary to `<prefix>.<pid>` when the process exits, if it traced any write.
  static writingAtExit(prefix: string): LatencyTrace {
    const trace = new LatencyTrace();
    process.on('exit', () => {
      if (trace.finished.length > 0) fs.writeFileSync(`${prefix}.${process.pid}`, trace.summary());
    });
    return trace;
  }

  arrived(): void {
    this.arrivalNs = process.hrtime.bigint();
  }

  proposed(requestId: number): void {
    if (this.finished.length + this.open.size >= keptRequests) return;
    this.open.set(requestId, [this.arrivalNs, process.hrtime.bigint()]);
  }

  // Stamps a later stage; the last one closes the request's record.
  mark(requestId: number, stage: Exclude<TraceStage, 'arrived' | 'proposed'>, atNs: bigint = process.hrtime.bigint()): void {
    const stamps = this.open.get(requestId);
    if (stamps === undefined) return;
    const at = traceStages.indexOf(stage);
    if (stamps.length !== at) {
      this.open.delete(requestId); // a stage skipped (an error path): not a write's whole path
      return;
    }
    stamps.push(atNs);
    if (stage === 'answered') {
      this.open.delete(requestId);
      this.finished.push(stamps);
    }
  }

  summary(): string {
    const lines = [`${this.finished.length} writes traced (microseconds: p50 p90 p99)`];
    const percentile = (sorted: number[], fraction: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? NaN;
    const row = (label: string, values: number[]) => {
      values.sort((a, b) => a - b);
      lines.push(`${label.padEnd(22)} ${[0.5, 0.9, 0.99].map((f) => percentile(values, f).toFixed(1).padStart(8)).join(' ')}`);
    };
    for (let i = 1; i < traceStages.length; i++) {
      row(`${traceStages[i - 1]} -> ${traceStages[i]}`, this.finished.map((stamps) => Number((stamps[i] as bigint) - (stamps[i - 1] as bigint)) / 1000));
    }
    row('arrived -> answered', this.finished.map((stamps) => Number((stamps[stamps.length - 1] as bigint) - (stamps[0] as bigint)) / 1000));
    return `${lines.join('\n')}\n`;
  }
}

const tracePath = process.env['MU_TRACE_LATENCY'];
export const latencyTrace: LatencyTrace | undefined = tracePath === undefined || tracePath === '' ? undefined : LatencyTrace.writingAtExit(tracePath);
