// Length-prefixed JSON frames: a 4-byte big-endian payload length, then that many bytes of
// UTF-8 JSON holding one object. The decoder validates the length before it buffers anything,
// so a peer (authenticated or not) can make us hold at most one frame's worth of bytes.

/** Largest payload accepted, in bytes. A 64 KiB card in base64 plus its envelope fits. */
export const MAX_FRAME_BYTES = 128 * 1024;

const LENGTH_PREFIX_BYTES = 4;

/** One decoded frame: a JSON object whose fields are still unchecked. */
export type FrameMessage = Record<string, unknown>;

/** A frame the decoder refuses; the connection it came from cannot be trusted any more. */
export class FrameError extends Error {
  override name = 'FrameError';
}

export function encodeFrame(message: object, maxFrameBytes: number = MAX_FRAME_BYTES): Buffer {
  const payload = Buffer.from(JSON.stringify(message), 'utf8');
  if (payload.length > maxFrameBytes) {
    throw new FrameError(`frame of ${payload.length} bytes exceeds the ${maxFrameBytes}-byte limit`);
  }
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, LENGTH_PREFIX_BYTES);
  return frame;
}

/**
 * Incremental decoder: push socket chunks in, get complete messages out. Once it throws it
 * stays failed (every later push throws too): frames after a bad one cannot be delimited.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(LENGTH_PREFIX_BYTES);
  private headerFilled = 0;
  // The payload being assembled; allocated only after its length has been checked.
  private payload: Buffer | undefined;
  private payloadFilled = 0;
  private failure: FrameError | undefined;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(readonly maxFrameBytes: number = MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1) {
      throw new RangeError(`maxFrameBytes must be a positive integer, got ${maxFrameBytes}`);
    }
  }

  /** Bytes held for an incomplete frame (never more than 4 + maxFrameBytes). */
  bufferedBytes(): number {
    return this.headerFilled + this.payloadFilled;
  }

  push(chunk: Buffer): FrameMessage[] {
    if (this.failure !== undefined) throw this.failure;
    const messages: FrameMessage[] = [];
    let offset = 0;
    try {
      while (offset < chunk.length) {
        if (this.payload === undefined) {
          const taken = chunk.copy(this.header, this.headerFilled, offset, offset + LENGTH_PREFIX_BYTES - this.headerFilled);
          this.headerFilled += taken;
          offset += taken;
          if (this.headerFilled < LENGTH_PREFIX_BYTES) break;
          this.payload = Buffer.allocUnsafe(this.checkedLength(this.header.readUInt32BE(0)));
          this.payloadFilled = 0;
        }
        const taken = chunk.copy(this.payload, this.payloadFilled, offset, offset + this.payload.length - this.payloadFilled);
        this.payloadFilled += taken;
        offset += taken;
        if (this.payloadFilled < this.payload.length) break;
        messages.push(this.parse(this.payload));
        this.payload = undefined;
        this.payloadFilled = 0;
        this.headerFilled = 0;
      }
    } catch (error) {
      this.failure = error instanceof FrameError ? error : new FrameError(String(error));
      this.payload = undefined;
      this.payloadFilled = 0;
      this.headerFilled = 0;
      throw this.failure;
    }
    return messages;
  }

  private checkedLength(length: number): number {
    if (length === 0) throw new FrameError('frame with a zero length');
    if (length > this.maxFrameBytes) {
      throw new FrameError(`frame length ${length} exceeds the ${this.maxFrameBytes}-byte limit`);
    }
    return length;
  }

  private parse(payload: Buffer): FrameMessage {
    let value: unknown;
    try {
      value = JSON.parse(this.utf8.decode(payload));
    } catch {
      throw new FrameError(`frame of ${payload.length} bytes is not valid UTF-8 JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new FrameError('frame does not hold a JSON object');
    }
    return value as FrameMessage;
  }
}
