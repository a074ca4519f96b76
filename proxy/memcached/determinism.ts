// memcached commands made the same on every replica before they enter the log. An
// expiration time up to 30 days is relative to the server's clock, so each replica would
// expire the item at another moment; the leader makes it absolute (a unix time, which
// memcached takes as such above 30 days). flush_all's delay likewise. Anything memcached
// does not read as a number is left as it is: every replica's memcached then refuses it the
// same way.

import { strtol32 } from './request_parser.js';

// memcached's REALTIME_MAXDELTA: larger exptimes are absolute unix times.
const maxRelativeSeconds = 60 * 60 * 24 * 30;

// `exptime` as an absolute time, given the leader's clock in seconds. The token is read as
// memcached reads it (strtol, then 32 bits: "4294967306" and "+010" are 10 seconds to it).
export function absoluteExptime(exptime: string, nowSeconds: number): string {
  const value = strtol32(Buffer.from(exptime, 'latin1'));
  if (value === undefined || value <= 0 || value > maxRelativeSeconds) return exptime; // refused, never, already expired, or absolute
  return String(nowSeconds + value);
}

// The token indices that hold an expiration time, by command: set-family lines (name key
// flags exptime bytes), touch key exptime, gat/gats exptime key..., flush_all [delay].
export function exptimeIndex(name: string): number | undefined {
  switch (name) {
    case 'set':
    case 'add':
    case 'replace':
    case 'append':
    case 'prepend':
    case 'cas':
      return 3;
    case 'touch':
      return 2;
    case 'gat':
    case 'gats':
    case 'flush_all':
      return 1;
    default:
      return undefined;
  }
}
