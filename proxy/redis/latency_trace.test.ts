// The opt-in stage timer: a request's stamps close at its answer, in stage order; a
// request that skips a stage (an error path) is left out rather than mis-attributed.
import { expect } from 'chai';

import { LatencyTrace } from './latency_trace.js';

describe('LatencyTrace', () => {
  it('summarises complete requests stage by stage and leaves out those that skipped a stage', () => {
    const trace = new LatencyTrace();
    const base = 1_000_000n;
    trace.arrived();
    trace.proposed(1);
    trace.proposed(2);
    const later = ['flushed', 'submitted', 'delivered', 'applied', 'sent', 'replied', 'answered'] as const;
    later.forEach((stage, i) => trace.mark(1, stage, base + BigInt((i + 1) * 1000)));
    trace.mark(2, 'flushed');
    trace.mark(2, 'answered'); // skipped the stages between: dropped
    const summary = trace.summary();
    expect(summary).to.match(/^1 writes traced/);
    // Each later step took 1 us (1000 ns apart).
    expect(summary).to.match(/submitted -> delivered\s+1\.0\s+1\.0\s+1\.0/);
    expect(summary).to.match(/replied -> answered\s+1\.0\s+1\.0\s+1\.0/);
  });
});
