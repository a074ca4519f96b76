// Where a backend listens: a TCP address, or a Unix domain socket path. A replica's
// backend is local by design, and a Unix socket is its fastest way in (no TCP stack on
// either side: about 20% off a small request's round trip, docs/PERFORMANCE.md) and the
// safest (file permissions, nothing on the network).
import type net from 'node:net';

export type Endpoint = { host: string; port: number; path?: undefined } | { path: string; host?: undefined; port?: undefined };

/** The longest path a Unix socket address holds on Linux (sun_path, less its NUL). */
export const UNIX_SOCKET_PATH_MAX_BYTES = 107;

/** `host:port` (IPv6 in brackets), or `unix:<path>`. */
export function describeEndpoint(endpoint: Endpoint): string {
  if (endpoint.path !== undefined) return `unix:${endpoint.path}`;
  return endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}

/** What net.connect takes to reach it. */
export function connectOptionsOf(endpoint: Endpoint): net.NetConnectOpts {
  return endpoint.path !== undefined ? { path: endpoint.path } : { host: endpoint.host, port: endpoint.port, noDelay: true };
}
