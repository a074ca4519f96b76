// What the process-level tests check and how they drive members: bursts of proposals at
// one member, waiting for a condition, and agreement of the applied histories.
import { expect } from 'chai';

import type { MemberCluster, MemberEvent } from './member_cluster.js';

// Agreement and order: every replica's applied "index:data" list is a prefix of the
// longest one (several commands share an entry, so an index repeats).
export function expectSameHistory(histories: string[][]): void {
  const longest = histories.reduce((a, b) => (a.length >= b.length ? a : b));
  for (const history of histories) expect(history).to.deep.equal(longest.slice(0, history.length));
}

export async function burst(cluster: MemberCluster, id: number, prefix: string, count: number, chunk = 50): Promise<MemberEvent[]> {
  const member = cluster.member(id);
  member.send({ op: 'burst', prefix, count, chunk });
  await member.waitFor((event) => event.event === 'burst-done' && event['prefix'] === prefix, `burst ${prefix}`, 30000);
  return member.events.filter((event) => typeof event['data'] === 'string' && (event['data'] as string).startsWith(`${prefix}-`));
}

export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

