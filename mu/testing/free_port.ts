// A TCP port free on 127.0.0.1 right now (tests and the demo pick their ports this way).
//
// Ports come from below the kernel's ephemeral range, never from it. A port the kernel
// handed out for `listen(0)` and that we released is soon handed out again as the local
// end of some outgoing connection (every backend connection takes one), and the proxy
// that was to listen on it then fails with EADDRINUSE. The kernel never picks ports below
// ip_local_port_range on its own, so only another listener can take one of ours; each
// process walks the range from a random start, so two test processes rarely meet, and a
// port is only handed out once it could be bound.
import fs from 'node:fs';
import net from 'node:net';

const LOWEST_PORT = 10_000;
const ATTEMPTS = 200;

function ephemeralLowest(): number {
  try {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const port = Number(low);
    return Number.isInteger(port) && port > 0 ? port : 32_768;
  } catch {
    return 32_768;
  }
}

const rangeEnd = ephemeralLowest();
const rangeSize = rangeEnd - LOWEST_PORT;
let nextOffset = rangeSize > 0 ? Math.floor(Math.random() * rangeSize) : 0;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function kernelPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

export async function freePort(): Promise<number> {
  // An ephemeral range that starts this low leaves nothing outside it: take the kernel's.
  if (rangeSize < 1000) return kernelPort();
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    // Taken synchronously, so concurrent callers in this process never get the same port.
    const port = LOWEST_PORT + nextOffset;
    nextOffset = (nextOffset + 1) % rangeSize;
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${LOWEST_PORT}..${rangeEnd - 1} after ${ATTEMPTS} attempts`);
}

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}
