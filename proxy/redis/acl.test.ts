// Users in the style of Redis ACLs: rules parsed as ACL SETUSER reads them, commands and
// keys checked as Redis checks them.
import crypto from 'node:crypto';

import { expect } from 'chai';

import { AccessControl, globToRegExp } from './acl.js';
import type { CommandInfo } from './command_table.js';

function command(name: string, categories: string[]): CommandInfo {
  return { name, arity: -1, flags: new Set(), firstKey: 1, lastKey: 1, step: 1, tips: [], categories: new Set(categories), class: 'write' };
}

const get = command('get', ['@read', '@string', '@fast']);
const set = command('set', ['@write', '@string', '@slow']);
const flushall = command('flushall', ['@keyspace', '@write', '@slow', '@dangerous']);
const configGet = command('config|get', ['@admin', '@slow', '@dangerous']);

describe('ACL users', () => {
  it('applies command rules in order, later ones overriding, by category, command and subcommand', () => {
    const access = AccessControl.fromConfig(undefined, [
      { name: 'app', rules: 'on >pw ~* +@all -@dangerous' },
      { name: 'reader', rules: 'on >pw allkeys +@read' },
      { name: 'tuned', rules: 'on >pw allkeys +@read -get +config|get' },
      { name: 'container', rules: 'on >pw allkeys nocommands +config' },
    ]);
    const app = access.user('app');
    expect([get, set, flushall, configGet].map((info) => app?.canRun(info))).to.deep.equal([true, true, false, false]);
    const reader = access.user('reader');
    expect([get, set, flushall].map((info) => reader?.canRun(info))).to.deep.equal([true, false, false]);
    const tuned = access.user('tuned');
    expect([get, configGet].map((info) => tuned?.canRun(info))).to.deep.equal([false, true]);
    expect(access.user('container')?.canRun(configGet)).to.equal(true);
    expect(access.user('container')?.canRun(get)).to.equal(false);
    expect(app?.unrestricted).to.equal(false);
    expect(access.user('default')?.unrestricted).to.equal(true);
  });

  it('checks every key against the patterns, as Redis globs match', () => {
    const access = AccessControl.fromConfig(undefined, [{ name: 'app', rules: 'on nopass ~app:* ~cache:?? +@all' }]);
    const app = access.user('app');
    const keys = (...names: string[]) => names.map((name) => ({ key: Buffer.from(name), read: true, write: true }));
    expect(app?.canAccessKeys(keys('app:1', 'cache:ab'))).to.equal(true);
    expect(app?.canAccessKeys(keys('app:1', 'other'))).to.equal(false);
    expect(app?.canAccessKeys(keys('cache:abc'))).to.equal(false);
    expect(app?.canAccessKeys([])).to.equal(true);
    expect(globToRegExp('h[ae]llo').test('hallo')).to.equal(true);
    expect(globToRegExp('h[^e]llo').test('hello')).to.equal(false);
    expect(globToRegExp('a\\*b').test('a*b')).to.equal(true);
    expect(globToRegExp('a\\*b').test('axb')).to.equal(false);
  });

  it('checks channels as Redis 7 does: glob patterns for PUBLISH and SUBSCRIBE, exact patterns for PSUBSCRIBE, none unless given', () => {
    const access = AccessControl.fromConfig(undefined, [
      { name: 'news', rules: 'on nopass ~* +@all &news.* &alerts' },
      { name: 'quiet', rules: 'on nopass ~* +@all' },
      { name: 'all', rules: 'on nopass ~* +@all &x allchannels' },
      { name: 'reset', rules: 'on nopass ~* +@all &* resetchannels &only' },
    ]);
    const channels = (...names: string[]) => names.map((name) => Buffer.from(name));
    const news = access.user('news');
    expect(news?.canAccessChannels(channels('news.sport', 'alerts'), false)).to.equal(true);
    expect(news?.canAccessChannels(channels('news.sport', 'weather'), false)).to.equal(false);
    expect(news?.canAccessChannels(channels('news.*'), true)).to.equal(true);
    expect(news?.canAccessChannels(channels('news.s*'), true), 'a narrower pattern is not one of them').to.equal(false);
    expect(access.user('quiet')?.canAccessChannels(channels('anything'), false)).to.equal(false);
    expect(access.user('quiet')?.unrestricted, 'no channels: checked per request').to.equal(false);
    expect(access.user('all')?.canAccessChannels(channels('anything'), true)).to.equal(true);
    expect(access.user('all')?.unrestricted).to.equal(true);
    expect(access.user('reset')?.canAccessChannels(channels('only'), false)).to.equal(true);
    expect(access.user('reset')?.canAccessChannels(channels('other'), false)).to.equal(false);
    expect(access.user('default')?.canAccessChannels(channels('anything'), false)).to.equal(true);
  });

  it('checks read and write key patterns against what the command does to each key', () => {
    const access = AccessControl.fromConfig(undefined, [
      { name: 'split', rules: 'on nopass %R~r:* %W~w:* ~rw:* +@all' },
      { name: 'reads', rules: 'on nopass %R~* +@all' },
      { name: 'merged', rules: 'on nopass %R~m:* %W~m:* +@all' },
    ]);
    const key = (name: string, read: boolean, write: boolean) => ({ key: Buffer.from(name), read, write });
    const split = access.user('split');
    expect([key('r:1', true, false), key('r:1', false, true), key('r:1', true, true)].map((k) => split?.canAccessKeys([k]))).to.deep.equal([true, false, false]);
    expect([key('w:1', true, false), key('w:1', false, true), key('w:1', true, true)].map((k) => split?.canAccessKeys([k]))).to.deep.equal([false, true, false]);
    expect(split?.canAccessKeys([key('rw:1', true, true), key('w:1', false, false), key('r:1', false, false)])).to.equal(true);
    expect(split?.canAccessKeys([key('other', false, false)]), 'no pattern matches').to.equal(false);
    expect(split?.readsAnyKey).to.equal(false);
    expect(access.user('reads')?.readsAnyKey).to.equal(true);
    expect(access.user('reads')?.canAccessKeys([key('x', false, true)])).to.equal(false);
    expect(access.user('merged')?.canAccessKeys([key('m:1', true, true)])).to.equal(true);
  });

  it('authenticates by password or SHA-256 digest, refuses disabled users, and derives the default user', () => {
    const digest = crypto.createHash('sha256').update('hashed').digest('hex');
    const access = AccessControl.fromConfig('topsecret', [
      { name: 'plain', rules: 'on >one >two +@all ~*' },
      { name: 'digest', rules: `on #${digest} +@all ~*` },
      { name: 'disabled', rules: 'off >pw +@all ~*' },
    ]);
    expect(access.authenticate('plain', Buffer.from('two'))?.name).to.equal('plain');
    expect(access.authenticate('plain', Buffer.from('three'))).to.equal(undefined);
    expect(access.authenticate('digest', Buffer.from('hashed'))?.name).to.equal('digest');
    expect(access.authenticate('disabled', Buffer.from('pw'))).to.equal(undefined);
    expect(access.authenticate('default', Buffer.from('topsecret'))?.name).to.equal('default');
    expect(access.initialUser).to.equal(undefined); // requirepass: nobody starts authenticated
    expect(AccessControl.fromConfig(undefined, []).initialUser?.name).to.equal('default');
    expect(access.names).to.deep.equal(['default', 'digest', 'disabled', 'plain']);
  });

  it('refuses what it cannot honour, naming the user and the rule', () => {
    const refused = (rules: string, requirepass?: string) => {
      try {
        AccessControl.fromConfig(requirepass, [{ name: rules === 'dup' ? 'default' : 'u', rules: rules === 'dup' ? 'on nopass' : rules }]);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(refused('on >pw %R~app:* %W~app:* %rw~x %WR~y')).to.equal('accepted');
    for (const bad of ['%X~app:*', '%RR~app:*', '%~app:*', '%R', '%Rapp', '%R~']) {
      expect(refused(`on >pw ${bad}`), bad).to.equal(`user 'u': '${bad}' is not a key pattern (~pattern, or %R~, %W~, %RW~ and a pattern)`);
    }
    expect(refused('on >pw allkeys ~app:*')).to.equal("user 'u': '~app:*' comes after all keys were granted (allkeys or ~*); start with resetkeys");
    expect(refused('on >pw %RW~* %R~app:*')).to.match(/comes after all keys were granted/);
    expect(refused('on >pw allkeys resetkeys %R~app:*')).to.equal('accepted');
    expect(refused('on >pw sometimes')).to.equal("user 'u': unknown rule 'sometimes'");
    expect(refused('on #abc')).to.match(/not a SHA-256 hex digest/);
    expect(refused('dup', 'pw')).to.equal("give requirepass or a user named 'default', not both");
    const access = AccessControl.fromConfig(undefined, [{ name: 'u', rules: 'on nopass +@nosuch -frobnicate' }]);
    expect(access.unknownInRules({ categories: new Set(['@read']), commands: new Set(['get']) })).to.deep.equal([
      "user 'u': unknown category '@nosuch'",
      "user 'u': unknown command 'frobnicate'",
    ]);
  });
});
