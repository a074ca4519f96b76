// A baseline for the benchmarks: the least a proxy written on Node can do. Every client
// connection gets its own connection to the backend, and bytes are copied both ways as
// they arrive, unparsed. One event-loop hop each way, as mu-proxy has, with none of its
// work (parsing, the log, the engine): bench:redis prints it beside mu-proxy so that the
// share of the gap that comes from Node itself is measured, not guessed.
//
//   node proxy/testing/node_passthrough.ts <listen-port> <backend-port | backend-socket-path>
// Prints "listening" once it accepts connections; ends when its stdin closes.
import net from 'node:net';

const [listenArgument, backendArgument = ''] = process.argv.slice(2);
const listenPort = Number(listenArgument);
const overUnixSocket = backendArgument.startsWith('/');
const backend: net.NetConnectOpts = overUnixSocket ? { path: backendArgument } : { host: '127.0.0.1', port: Number(backendArgument) };
if (!Number.isInteger(listenPort) || (!overUnixSocket && !Number.isInteger(Number(backendArgument)))) {
  console.error('usage: node_passthrough.ts <listen-port> <backend-port | backend-socket-path>');
  process.exit(2);
}

const server = net.createServer((client) => {
  client.setNoDelay(true);
  const upstream = net.connect(backend);
  if (!overUnixSocket) upstream.setNoDelay(true);
  client.on('data', (chunk) => upstream.write(chunk));
  upstream.on('data', (chunk) => client.write(chunk));
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('close', close).on('error', close);
  upstream.on('close', close).on('error', close);
});
server.listen(listenPort, '127.0.0.1', () => console.log('listening'));
process.stdin.on('close', () => process.exit(0)).resume();
