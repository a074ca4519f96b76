// Log commands larger than an entry: split into chunks, put back together in log order,
// and dropped whenever their pieces cannot complete (a leader deposed part-way).
import { expect } from 'chai';

import { ChunkAssembler, chunkOverheadBytes, decodeLogCommand, encodeLogCommand, LogCommandKind, splitLogCommand, type LogCommand } from './log_command.js';

function bigCommand(requestId: number, bytes: number): Buffer {
  const value = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) value[i] = (i * 31 + requestId) & 0xff;
  return encodeLogCommand({ kind: LogCommandKind.commands, origin: 1, requestId, db: 3, parts: [value] });
}

const decoded = (chunks: Buffer[]): LogCommand[] => chunks.map((chunk) => decodeLogCommand(chunk));

describe('log commands larger than an entry', () => {
  it('splits into chunks no larger than the limit, which reassemble into the same command', () => {
    const whole = bigCommand(7, 10_000);
    const chunks = splitLogCommand(whole, 1, 7, 1024);
    expect(chunks.length).to.equal(Math.ceil(whole.length / (1024 - chunkOverheadBytes)));
    for (const chunk of chunks) expect(chunk.length).to.be.at.most(1024);
    const assembler = new ChunkAssembler();
    const results = decoded(chunks).map((chunk) => assembler.push(chunk));
    expect(results.slice(0, -1).every((result) => result === undefined)).to.equal(true);
    const last = results[results.length - 1] as LogCommand;
    expect(encodeLogCommand(last).equals(whole)).to.equal(true);
  });

  it('drops a command whose pieces are interrupted, have a gap, or lack their start; the next one still assembles', () => {
    const assembler = new ChunkAssembler();
    const first = decoded(splitLogCommand(bigCommand(1, 5000), 1, 1, 1024));
    const second = decoded(splitLogCommand(bigCommand(2, 5000), 1, 2, 1024));
    // Interrupted by another command (a new leader's entry): never completes.
    for (const chunk of first.slice(0, 2)) expect(assembler.push(chunk)).to.equal(undefined);
    assembler.interrupt();
    for (const chunk of first.slice(2)) expect(assembler.push(chunk)).to.equal(undefined);
    // A gap (a piece replaced by a no-op): never completes.
    for (const [i, chunk] of second.entries()) if (i !== 1) expect(assembler.push(chunk)).to.equal(undefined);
    // Pieces of another request in the middle: the first one is dropped, the second completes.
    const third = decoded(splitLogCommand(bigCommand(3, 5000), 1, 3, 1024));
    const fourth = decoded(splitLogCommand(bigCommand(4, 3000), 2, 4, 1024));
    expect(assembler.push(third[0] as LogCommand)).to.equal(undefined);
    const results = fourth.map((chunk) => assembler.push(chunk));
    expect(results[results.length - 1]?.requestId).to.equal(4);
    for (const chunk of third.slice(1)) expect(assembler.push(chunk)).to.equal(undefined);
  });
});
