// XADD and XTRIM with approximate trimming (`~`): how much they trim depends on how the
// stream's nodes are laid out, so, as Redis does for its own replicas, the leader runs the
// command once and replicates it with the trim made exact: `~` becomes `=`, the threshold
// becomes what the leader's stream holds afterwards (its length for MAXLEN, its first id
// for MINID), LIMIT (allowed with `~` only) goes, and XADD's `*` becomes the id it got.
// Applied again at the leader it changes nothing: XADD's id already exists (an error, the
// whole command refused) and the stream is already that long.
import { parseReply } from '../../adapters/redis/parse_reply.js';
import type { BackendQuery } from './stream_group_effects.js';

const word = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString('latin1').toLowerCase());

interface TrimArguments {
  strategy: 'maxlen' | 'minid';
  approximateAt: number; // the index of `~`
  thresholdAt: number;
  limitAt: number | undefined; // the index of LIMIT (its count follows)
  idAt: number | undefined; // XADD's id
}

// Where the trim clause is, when the command trims approximately; undefined otherwise
// (including malformed commands: the backend answers them with its own error, unchanged).
function approximateTrim(argv: ReadonlyArray<Buffer>): TrimArguments | undefined {
  const name = word(argv[0]);
  if (name !== 'xadd' && name !== 'xtrim') return undefined;
  let strategy: TrimArguments['strategy'] | undefined;
  let approximateAt = -1;
  let thresholdAt = -1;
  let limitAt: number | undefined;
  let i = 2;
  while (i < argv.length) {
    const option = word(argv[i]);
    if (name === 'xadd' && option === 'nomkstream') {
      i++;
    } else if ((option === 'maxlen' || option === 'minid') && strategy === undefined) {
      strategy = option;
      i++;
      if (word(argv[i]) === '~') approximateAt = i++;
      else if (word(argv[i]) === '=') i++;
      thresholdAt = i++;
    } else if (option === 'limit' && strategy !== undefined) {
      limitAt = i;
      i += 2;
    } else {
      break;
    }
  }
  if (strategy === undefined || approximateAt < 0 || thresholdAt >= argv.length) return undefined;
  return { strategy, approximateAt, thresholdAt, limitAt, idAt: name === 'xadd' ? i : undefined };
}

export function isApproximateTrim(argv: ReadonlyArray<Buffer>): boolean {
  return approximateTrim(argv) !== undefined;
}

// The exact command to replicate, given the leader backend's `reply` and what its stream
// holds now; null when nothing changed (an error, or XADD NOMKSTREAM on a missing key).
export async function exactTrimEffect(argv: ReadonlyArray<Buffer>, reply: Buffer, query: BackendQuery): Promise<Buffer[] | null> {
  const trim = approximateTrim(argv);
  if (trim === undefined || reply[0] === 0x2d /* - */ || reply.equals(nilBulk)) return null;
  const key = argv[1] as Buffer;
  const [lengthReply, firstReply] = await query([
    [Buffer.from('XLEN'), key],
    [Buffer.from('XRANGE'), key, Buffer.from('-'), Buffer.from('+'), Buffer.from('COUNT'), Buffer.from('1')],
  ]);
  const length = parseReply(lengthReply as Buffer) as number;
  const first = (parseReply(firstReply as Buffer, { buffers: true }) as Array<[Buffer, unknown]>)[0]?.[0];
  // MINID of an emptied stream: nothing is left either way, so MAXLEN 0 says the same.
  const [strategy, threshold] =
    trim.strategy === 'maxlen' || first === undefined ? [Buffer.from('MAXLEN'), Buffer.from(String(length))] : [Buffer.from('MINID'), first];
  const effect: Buffer[] = [];
  argv.forEach((arg, i) => {
    if (trim.limitAt !== undefined && (i === trim.limitAt || i === trim.limitAt + 1)) return;
    if (i === trim.approximateAt) effect.push(Buffer.from('='));
    else if (i === trim.approximateAt - 1) effect.push(strategy);
    else if (i === trim.thresholdAt) effect.push(threshold);
    else if (i === trim.idAt && arg.length === 1 && arg[0] === 0x2a /* * */) effect.push(parseReply(reply, { buffers: true }) as Buffer);
    else effect.push(arg);
  });
  return effect;
}

const nilBulk = Buffer.from('$-1\r\n');
