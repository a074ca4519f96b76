// How one replica's proxy proves to another's that it is a member of the cluster, on the
// client port: a token of the cluster secret (HMAC-SHA256 over what it asks for and the
// time), so the connection needs no user's password. Used by the link that hands a
// follower's client to the leader (`MU FORWARDED`, acting as that client's user) and by a
// replica fetching a snapshot (`MU PEER`). A token is good for five minutes, to allow for
// clocks that differ between hosts; like everything else on the client port it travels in
// clear, so someone who can read the network can replay it within that time (and could
// read the data anyway).
import crypto from 'node:crypto';

const validityMs = 5 * 60 * 1000;

export type PeerPurpose = 'forwarded' | 'peer';

export class PeerAuthenticator {
  constructor(
    private readonly secret: Buffer,
    private readonly nodeId: number,
    private readonly now: () => number = Date.now,
  ) {}

  // The arguments after `MU FORWARDED` / `MU PEER`: origin, user, time, token.
  arguments(purpose: PeerPurpose, user: string): string[] {
    const at = String(this.now());
    return [String(this.nodeId), user, at, this.mac(purpose, String(this.nodeId), user, at)];
  }

  // The user the peer acts as, or why its arguments are refused.
  verify(purpose: PeerPurpose, args: ReadonlyArray<Buffer>): { origin: number; user: string } | string {
    if (args.length !== 4) return 'wrong number of arguments';
    const [origin, user, at, token] = args.map((arg) => arg.toString('latin1')) as [string, string, string, string];
    const age = Math.abs(this.now() - Number(at));
    if (!/^\d+$/.test(origin) || !/^\d+$/.test(at) || !(age <= validityMs)) return 'a stale or malformed token';
    const expected = Buffer.from(this.mac(purpose, origin, user, at), 'latin1');
    const given = Buffer.from(token, 'latin1');
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return 'a token not made with the cluster secret';
    return { origin: Number(origin), user };
  }

  private mac(purpose: PeerPurpose, origin: string, user: string, at: string): string {
    return crypto.createHmac('sha256', this.secret).update(`mu-proxy ${purpose}\n${origin}\n${user}\n${at}`).digest('hex');
  }
}
