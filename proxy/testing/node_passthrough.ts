// A baseline for the benchmarks: the least a proxy written on Node can do. Every client
// connection gets its own connection to the backend, and bytes are copied both ways as
// they arrive, unparsed. One event-loop hop each way, as mu-proxy has, with none of its
// work (parsing, the log, the engine): bench:redis prints it beside mu-proxy so that the
// share of the gap that comes from Node itself is measured, not guessed.
//
//   node proxy/testing/node_passthrough.ts <listen-port> <backend-port>
// Prints "listening" once it accepts connections; ends when its stdin closes.
import net from 'node:net';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
if (!Number.isInteger(listenPort) || !Number.isInteger(backendPort)) {
  console.error('usage: node_passthrough.ts <listen-port> <backend-port>');
  process.exit(2);
}

const server = net.createServer((client) => {
  client.setNoDelay(true);
  const backend = net.connect({ host: '127.0.0.1', port: backendPort as number });
  backend.setNoDelay(true);
  client.on('data', (chunk) => backend.write(chunk));
  backend.on('data', (chunk) => client.write(chunk));
  const close = () => {
    client.destroy();
    backend.destroy();
  };
  client.on('close', close).on('error', close);
  backend.on('close', close).on('error', close);
});
server.listen(listenPort, '127.0.0.1', () => console.log('listening'));
process.stdin.on('close', () => process.exit(0)).resume();
