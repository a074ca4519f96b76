// Test support: raw bytes to a server on one connection, each request given `pauseMs` to
// be answered (then `settleMs` more at the end); resolves with every byte received and
// whether the server ended the connection.
import net from 'node:net';

export async function rawExchange(port: number, requests: Buffer[], pauseMs: number, settleMs = 0): Promise<{ received: Buffer; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  await new Promise((resolve) => socket.once('connect', resolve));
  for (const request of requests) {
    socket.write(request);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
  socket.destroy();
  return { received: Buffer.concat(chunks), closed };
}
