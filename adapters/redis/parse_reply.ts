// One raw RESP2 reply as JS values, through redis-parser: strings (or Buffers with
// `buffers`), numbers, arrays, null for nil; an error reply is thrown as the parser's
// ReplyError. For the few places that need to look inside a reply (start-up queries, the
// effects of nondeterministic writes); the data path passes replies through as bytes.
import RedisParser from 'redis-parser';

export function parseReply(raw: Buffer, options: { buffers?: boolean } = {}): unknown {
  let value: unknown;
  let failure: Error | undefined;
  let complete = false;
  const parser = new RedisParser({
    returnBuffers: options.buffers === true,
    returnReply: (reply: unknown) => {
      value = reply;
      complete = true;
    },
    returnError: (error: Error) => {
      failure = error;
      complete = true;
    },
  });
  parser.execute(raw);
  if (failure !== undefined) throw failure;
  if (!complete) throw new Error('parseReply: an incomplete reply');
  return value;
}
