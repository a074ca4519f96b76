// Reply lines the memcached front end writes itself (everything else is the backend's own
// bytes). Line breaks inside would end the line early, so they become a space.
export function line(text: string): Buffer {
  return Buffer.from(`${text.replace(/[\r\n]+/g, ' ')}\r\n`, 'latin1');
}
