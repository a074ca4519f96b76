// memcached commands made the same on every replica before they enter the log. An
// expiration time up to 30 days is relative to the server's clock, so each replica would
// expire the item at another moment; the leader makes it absolute (a unix time, which
// memcached takes as such above 30 days). flush_all's delay likewise. Anything that is not
// a plain integer is left as it is: every replica's memcached then refuses it the same way.

// memcached's REALTIME_MAXDELTA: larger exptimes are absolute unix times.
const maxRelativeSeconds = 60 * 60 * 24 * 30;

// `exptime` as an absolute time, given the leader's clock in seconds.
export function absoluteExptime(exptime: string, nowSeconds: number): string {
  if (!/^[+-]?\d{1,10}$/.test(exptime)) return exptime;
  const value = Number(exptime);
  if (value <= 0 || value > maxRelativeSeconds) return exptime; // never, already expired, or absolute
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
