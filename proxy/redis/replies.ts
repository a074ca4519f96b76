// RESP2 replies the proxy writes itself (everything else is the backend's own bytes).
export const ok = Buffer.from('+OK\r\n');
export const queued = Buffer.from('+QUEUED\r\n');
export const pong = Buffer.from('+PONG\r\n');
export const nilBulk = Buffer.from('$-1\r\n');
export const nilArray = Buffer.from('*-1\r\n');

export function simpleString(text: string): Buffer {
  return Buffer.from(`+${text}\r\n`);
}

// `text` starts with the error code (ERR, NOAUTH, READONLY...). Line breaks would end the
// reply early, so they become spaces.
export function errorReply(text: string): Buffer {
  return Buffer.from(`-${text.replace(/[\r\n]+/g, ' ')}\r\n`);
}

export function bulk(value: Buffer | string): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

export function integer(value: number): Buffer {
  return Buffer.from(`:${value}\r\n`);
}

export function array(items: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(`*${items.length}\r\n`), ...items]);
}
