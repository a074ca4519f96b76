// A front end's TCP listener: a clear error when the address cannot be taken, and the port
// it got (the configured one, or the one the system chose for port 0).
import net from 'node:net';

export async function listen(host: string, port: number, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${host}:${port}: ${error.code ?? error.message}`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}

export function boundPort(server: net.Server | undefined, configured: number): number {
  const address = server?.address();
  return address !== null && typeof address === 'object' ? address.port : configured;
}
