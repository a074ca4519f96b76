// How Redis itself reads command and option names, shared by the command table and the
// determinism rewrites (both must decide exactly as redis-server would).

/** A command name: the whole argument, ASCII lower case (Redis hashes the full bytes);
 *  undefined when empty or longer than `maxBytes`. */
export function commandName(arg: Buffer, maxBytes = 128): string | undefined {
  if (arg.length === 0 || arg.length > maxBytes) return undefined;
  let name = '';
  for (const byte of arg) name += String.fromCharCode(byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte);
  return name;
}

/** Redis's strcasecmp(arg->ptr, name): ASCII case insensitive, up to the first NUL of arg. */
export function optIs(arg: Buffer, lowerName: string): boolean {
  if (arg.length < lowerName.length) return false;
  if (arg.length > lowerName.length && arg[lowerName.length] !== 0) return false;
  for (let i = 0; i < lowerName.length; i++) {
    const byte = arg[i] as number;
    if ((byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte) !== lowerName.charCodeAt(i)) return false;
  }
  return true;
}
