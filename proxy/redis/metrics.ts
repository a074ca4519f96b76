// The Prometheus endpoint of a replica: GET /metrics answers the text exposition format
// (version 0.0.4) with the replica's role, indices, backend lag and each front end's
// counters (Redis: mu_<counter>_total; memcached: mu_memcached_<counter>_total); anything
// else is a 404. Read-only and cheap: one status snapshot per scrape.
import http from 'node:http';

import type { Replica } from '../../mu/replica.js';
import type { ApplyPipeline } from './apply_pipeline.js';

// What a scrape reads, whichever front ends the replica runs.
export interface MetricsSource {
  replica: Replica;
  pipeline: ApplyPipeline;
  // Commands sent to the local backends and not yet answered.
  backendPending(): number;
  fronts: MetricsFront[];
}

export interface MetricsFront {
  // '' for the Redis front end (its names predate the memcached one), 'memcached_' for memcached.
  prefix: '' | 'memcached_';
  clients(): number;
  // The front end's counters object: every property a number.
  counters: object;
}

function line(name: string, help: string, type: 'gauge' | 'counter', value: number, labels = ''): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${labels} ${Number.isFinite(value) ? value : 0}\n`;
}

export function renderMetrics(source: MetricsSource): string {
  const { replica, pipeline } = source;
  const status = replica.status();
  const node = `{node="${replica.nodeId}"}`;
  let out = '';
  out += line('mu_leader', '1 while this replica leads', 'gauge', status.role === 'leader' ? 1 : 0, node);
  out += line('mu_leader_id', 'the replica this one follows (-1: none)', 'gauge', replica.role.leaderId ?? -1, node);
  out += line('mu_proposal', 'the proposal number this replica last used', 'gauge', status.proposal, node);
  out += line('mu_applied_index', 'the next log index this replica applies', 'gauge', status.appliedIndex, node);
  out += line('mu_backend_applied_index', 'the last log index handed to the local backend', 'gauge', pipeline.appliedIndex, node);
  out += line('mu_backend_pending', 'commands sent to the local backend and not yet answered', 'gauge', source.backendPending(), node);
  out += line('mu_backend_failed', '1 once the local backend failed or diverged (writes refused)', 'gauge', pipeline.backendFailed === undefined ? 0 : 1, node);
  out += line('mu_needs_state_transfer', '1 when this replica fell behind the recycled log', 'gauge', status.needsStateTransfer ? 1 : 0, node);
  status.peerAlive.forEach((alive, peer) => {
    out += line('mu_peer_alive', 'the failure detector says the peer is alive', 'gauge', alive ? 1 : 0, `{node="${replica.nodeId}",peer="${peer}"}`);
  });
  out += line('mu_propose_to_commit_p50_microseconds', 'propose-to-commit latency, median of the last proposals', 'gauge', status.proposeToCommit.p50Us, node);
  out += line('mu_propose_to_commit_p99_microseconds', 'propose-to-commit latency, 99th percentile of the last proposals', 'gauge', status.proposeToCommit.p99Us, node);
  for (const front of source.fronts) {
    const protocol = front.prefix === '' ? 'Redis' : 'memcached';
    out += line(`mu_${front.prefix}clients`, `connected ${protocol} clients`, 'gauge', front.clients(), node);
    for (const [name, value] of Object.entries(front.counters) as Array<[string, number]>) {
      const metric = `mu_${front.prefix}${name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)}_total`;
      out += line(metric, `${protocol} front end counter ${name}`, 'counter', value, node);
    }
  }
  return out;
}

export async function serveMetrics(source: MetricsSource, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(renderMetrics(source));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`metrics: cannot listen on ${host}:${port}: ${error.code ?? error.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}

// Serves the endpoint when the replica's configuration gives it an address.
export async function startMetrics(source: MetricsSource, address: { host: string; port: number } | undefined, log: (line: string) => void): Promise<http.Server | undefined> {
  if (address === undefined) return undefined;
  const server = await serveMetrics(source, address.host, address.port);
  log(`Prometheus metrics on http://${address.host}:${address.port}/metrics`);
  return server;
}
