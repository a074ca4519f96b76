// Who may do what through the proxy: users in the style of Redis ACLs, checked by the
// proxy itself (the backends have no users of their own; the proxy is their only client).
//
// A user is written as Redis' ACL SETUSER rules, in the configuration file:
//   { "name": "app", "rules": "on >s3cret ~app:* +@all -@dangerous" }
// Supported rules: on, off, >password, #<sha256 hex>, nopass, resetpass, ~pattern,
// %R~pattern, %W~pattern, %RW~pattern, allkeys, resetkeys, +@category, -@category,
// +command, -command, +command|sub, -command|sub, allcommands, nocommands, &pattern,
// allchannels, resetchannels, reset. Rules apply in order, later ones overriding earlier
// ones, as in Redis. Keys as in Redis 7: ~pattern lets a command read and write the keys
// it matches, %R~ only read them, %W~ only write them; what a command does to each key
// comes from its key specs (key_access.ts). Channels as in Redis 7 (acl-pubsub-default
// resetchannels): a user given no channel rule may use no channel; PUBLISH, SPUBLISH,
// SUBSCRIBE and SSUBSCRIBE need each channel to match a pattern, PSUBSCRIBE each pattern
// to be one of the user's patterns, letter for letter. Selectors (the parenthesised rule
// sets of Redis 7) are not supported; a rule the proxy does not know is a configuration
// error, never ignored.
//
// `requirepass` is the default user's password, as in Redis. Without it, and without a
// user named "default", the default user needs no password and may do everything.
import crypto from 'node:crypto';

import type { CommandInfo } from './command_table.js';
import type { KeyAccess } from './key_access.js';

interface ChannelPattern {
  text: string;
  regexp: RegExp;
}

interface KeyPattern {
  text: string;
  regexp: RegExp;
  read: boolean;
  write: boolean;
}

interface CommandRule {
  allow: boolean;
  category?: string; // '@read'; '@all' for every command
  command?: string; // 'config', or 'config|get'
}

export class AclUser {
  constructor(
    readonly name: string,
    readonly enabled: boolean,
    private readonly passwordHashes: ReadonlySet<string>, // sha256 hex
    readonly nopass: boolean,
    private readonly commandRules: readonly CommandRule[],
    private readonly keyPatterns: readonly KeyPattern[] | 'all',
    private readonly channelPatterns: readonly ChannelPattern[] | 'all',
  ) {
    this.unrestricted =
      keyPatterns === 'all' && channelPatterns === 'all' && commandRules.length > 0 && commandRules.every((rule) => rule.allow && rule.category === '@all');
  }

  checkPassword(password: Buffer): boolean {
    if (!this.enabled) return false;
    if (this.nopass) return true;
    const hash = crypto.createHash('sha256').update(password).digest();
    let found = false;
    // Compared in constant time against each stored hash.
    for (const stored of this.passwordHashes) if (crypto.timingSafeEqual(hash, Buffer.from(stored, 'hex'))) found = true;
    return found;
  }

  // Whether this user may run the command `info` (a subcommand's own name for a
  // subcommand: 'config|get'). `categories` are the command's ACL categories ('@read').
  canRun(info: CommandInfo): boolean {
    let allowed = false;
    const container = info.name.includes('|') ? info.name.slice(0, info.name.indexOf('|')) : undefined;
    for (const rule of this.commandRules) {
      const matches =
        rule.category === '@all' ||
        (rule.category !== undefined && info.categories.has(rule.category)) ||
        (rule.command !== undefined && (rule.command === info.name || rule.command === container));
      if (matches) allowed = rule.allow;
    }
    return allowed;
  }

  // Whether every key may be read (Redis' "full key access", which SORT's BY and GET
  // need): all keys, or a read pattern of exactly '*'.
  get readsAnyKey(): boolean {
    const patterns = this.keyPatterns;
    return patterns === 'all' || patterns.some((pattern) => pattern.read && pattern.text === '*');
  }

  // Whether each key may be used as the command uses it: a pattern that grants at least
  // that access (read, write, or both) must match it, as ACLSelectorCheckKey decides.
  canAccessKeys(keys: ReadonlyArray<KeyAccess>): boolean {
    const patterns = this.keyPatterns;
    if (patterns === 'all') return true;
    return keys.every((access) => {
      const text = access.key.toString('latin1');
      return patterns.some((pattern) => (pattern.read || !access.read) && (pattern.write || !access.write) && pattern.regexp.test(text));
    });
  }

  // `channels` of PUBLISH or SUBSCRIBE (and their shard forms): each must match one of the
  // user's patterns. With `asPatterns` (PSUBSCRIBE's), each must be one of them exactly.
  canAccessChannels(channels: ReadonlyArray<Buffer>, asPatterns: boolean): boolean {
    const patterns = this.channelPatterns;
    if (patterns === 'all') return true;
    return channels.every((channel) => {
      const text = channel.toString('latin1');
      return patterns.some((pattern) => (asPatterns ? pattern.text === text : pattern.regexp.test(text)));
    });
  }

  // The categories and commands its rules name, to check against the command table.
  get namedInRules(): { categories: string[]; commands: string[] } {
    return {
      categories: this.commandRules.flatMap((rule) => (rule.category === undefined || rule.category === '@all' ? [] : [rule.category])),
      commands: this.commandRules.flatMap((rule) => (rule.command === undefined ? [] : [rule.command])),
    };
  }

  // May run anything on any key: nothing to check per request (the common case, asked on
  // the hot path), and the proxy's own administrative commands ask for it.
  readonly unrestricted: boolean;
}

export class AccessControl {
  private constructor(private readonly users: ReadonlyMap<string, AclUser>) {}

  // `users`: name and rules, as in the configuration. Throws an Error naming the user and
  // the rule it cannot take.
  static fromConfig(requirepass: string | undefined, users: ReadonlyArray<{ name: string; rules: string }>): AccessControl {
    const byName = new Map<string, AclUser>();
    for (const { name, rules } of users) {
      if (byName.has(name)) throw new Error(`user '${name}' is defined twice`);
      byName.set(name, parseUser(name, rules));
    }
    if (byName.has('default') && requirepass !== undefined) {
      throw new Error("give requirepass or a user named 'default', not both");
    }
    if (!byName.has('default')) {
      byName.set('default', parseUser('default', requirepass === undefined ? 'on nopass ~* &* +@all' : `on >${requirepass} ~* &* +@all`));
    }
    return new AccessControl(byName);
  }

  // The user a connection starts as: the default user, when it needs no password.
  get initialUser(): AclUser | undefined {
    const user = this.users.get('default') as AclUser;
    return user.enabled && user.nopass ? user : undefined;
  }

  authenticate(name: string, password: Buffer): AclUser | undefined {
    const user = this.users.get(name);
    return user !== undefined && user.checkPassword(password) ? user : undefined;
  }

  get names(): string[] {
    return [...this.users.keys()].sort();
  }

  user(name: string): AclUser | undefined {
    return this.users.get(name);
  }

  // Every rule that names a category or a command this server does not have (Redis
  // refuses them too); empty when all are known.
  unknownInRules(known: { categories: ReadonlySet<string>; commands: ReadonlySet<string> }): string[] {
    const problems: string[] = [];
    for (const user of this.users.values()) {
      const named = user.namedInRules;
      for (const category of named.categories) if (!known.categories.has(category)) problems.push(`user '${user.name}': unknown category '${category}'`);
      for (const command of named.commands) if (!known.commands.has(command)) problems.push(`user '${user.name}': unknown command '${command}'`);
    }
    return problems;
  }

  get defaultNeedsPassword(): boolean {
    return !(this.users.get('default') as AclUser).nopass;
  }
}

// Glob as Redis' stringmatchlen: * ? [abc] [^a] [a-z] and \ escapes.
export function globToRegExp(pattern: string): RegExp {
  let out = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') out += '[\\s\\S]*';
    else if (c === '?') out += '[\\s\\S]';
    else if (c === '\\' && i + 1 < pattern.length) out += escape(pattern[++i] as string);
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) out += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        const negate = body.startsWith('^');
        if (negate) body = body.slice(1);
        out += `[${negate ? '^' : ''}${body.replace(/[\]\\]/g, (m) => `\\${m}`)}]`;
        i = end;
      }
    } else out += escape(c);
  }
  return new RegExp(`${out}$`);
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, (m) => `\\${m}`);
}

// `~pattern` (read and write) or `%<R and/or W>~pattern`, as ACLSetSelector reads them.
function parseKeyPattern(token: string): KeyPattern | undefined {
  let read = true;
  let write = true;
  let offset = 1;
  if (token.startsWith('%')) {
    read = false;
    write = false;
    for (; offset < token.length; offset++) {
      const flag = (token[offset] as string).toUpperCase();
      if (flag === 'R' && !read) read = true;
      else if (flag === 'W' && !write) write = true;
      else if (token[offset] === '~') break;
      else return undefined;
    }
    if (offset >= token.length || (!read && !write)) return undefined;
    offset++;
    if (offset >= token.length) return undefined; // '%R~' with no pattern, as Redis refuses it
  }
  const text = token.slice(offset);
  return { text, regexp: globToRegExp(text), read, write };
}

function parseUser(name: string, rules: string): AclUser {
  if (!/^[^\s]+$/.test(name)) throw new Error(`user name '${name}' must be one word`);
  let enabled = false;
  let nopass = false;
  const hashes = new Set<string>();
  let commands: CommandRule[] = [];
  let keys: KeyPattern[] | 'all' = [];
  let channels: ChannelPattern[] | 'all' = [];
  for (const token of rules.split(/\s+/).filter((word) => word.length > 0)) {
    const lower = token.toLowerCase();
    if (lower === 'on') enabled = true;
    else if (lower === 'off') enabled = false;
    else if (lower === 'nopass') {
      nopass = true;
      hashes.clear();
    } else if (lower === 'resetpass') {
      nopass = false;
      hashes.clear();
    } else if (token.startsWith('>')) {
      hashes.add(crypto.createHash('sha256').update(token.slice(1)).digest('hex'));
      nopass = false;
    } else if (token.startsWith('#')) {
      if (!/^#[0-9a-fA-F]{64}$/.test(token)) throw new Error(`user '${name}': '${token}' is not a SHA-256 hex digest`);
      hashes.add(token.slice(1).toLowerCase());
      nopass = false;
    } else if (lower === 'allkeys') keys = 'all';
    else if (lower === 'resetkeys') keys = [];
    else if (token.startsWith('~') || token.startsWith('%')) {
      const pattern = parseKeyPattern(token);
      if (pattern === undefined) throw new Error(`user '${name}': '${token}' is not a key pattern (~pattern, or %R~, %W~, %RW~ and a pattern)`);
      // As Redis: a pattern after all keys were granted is refused, not ignored.
      if (keys === 'all') throw new Error(`user '${name}': '${token}' comes after all keys were granted (allkeys or ~*); start with resetkeys`);
      if (pattern.read && pattern.write && pattern.text === '*') keys = 'all';
      else {
        // The same pattern twice: its permissions add up (Redis merges them too).
        const same = keys.find((existing) => existing.text === pattern.text);
        if (same === undefined) keys.push(pattern);
        else {
          same.read ||= pattern.read;
          same.write ||= pattern.write;
        }
      }
    }
    else if (lower === 'allchannels' || token === '&*') channels = 'all';
    else if (lower === 'resetchannels') channels = [];
    else if (token.startsWith('&')) {
      if (channels !== 'all') channels.push({ text: token.slice(1), regexp: globToRegExp(token.slice(1)) });
    }
    else if (lower === 'allcommands') commands.push({ allow: true, category: '@all' });
    else if (lower === 'nocommands') commands.push({ allow: false, category: '@all' });
    else if (lower === 'reset') {
      enabled = false;
      nopass = false;
      hashes.clear();
      commands = [];
      keys = [];
      channels = [];
    } else if (token.startsWith('+@') || token.startsWith('-@')) {
      commands.push({ allow: token[0] === '+', category: lower.slice(1) });
    } else if (token.startsWith('+') || token.startsWith('-')) {
      if (token.length === 1) throw new Error(`user '${name}': '${token}' names no command`);
      commands.push({ allow: token[0] === '+', command: lower.slice(1) });
    } else {
      throw new Error(`user '${name}': unknown rule '${token}'`);
    }
  }
  return new AclUser(name, enabled, hashes, nopass, commands, keys, channels);
}
