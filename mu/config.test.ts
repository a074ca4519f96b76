// The cluster configuration file: validation (every problem reported with its path),
// loading from disk, and the native Replica's options built from it. Pure TypeScript: the
// native addon is not loaded (config.ts imports only its types).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { expect } from 'chai';

import {
  type ClusterConfig,
  ConfigError,
  engineDefaults,
  loadClusterConfig,
  minSecretBytes,
  nativeReplicaOptions,
  parseAddress,
  validateClusterConfig,
} from './config.js';

type Doc = Record<string, unknown>;

const SECRET = '0123456789abcdef'; // exactly minSecretBytes
const LONG_SECRET = 'a shared secret of 32 bytes.....';
const NO_ENV: NodeJS.ProcessEnv = {};

function replicas(count: number): Doc[] {
  return Array.from({ length: count }, (_, id) => ({ id, control: `10.0.0.${id + 1}:7400` }));
}

// A fresh, valid document each call (tests mutate what they get).
function doc(overrides: Doc = {}): Doc {
  return { cluster: 'orders', secret: SECRET, replicas: replicas(3), ...overrides };
}

const noReadFile = (file: string): Buffer => {
  throw new Error(`readFile(${file}) must not be called`);
};

function validate(
  document: unknown,
  env: NodeJS.ProcessEnv = NO_ENV,
  readFile: (file: string) => Buffer = noReadFile,
): ClusterConfig {
  return validateClusterConfig(document, env, readFile);
}

// The problem lines of the ConfigError that validating `document` must throw.
function problems(
  document: unknown,
  env: NodeJS.ProcessEnv = NO_ENV,
  readFile: (file: string) => Buffer = noReadFile,
): string[] {
  let caught: unknown;
  try {
    validateClusterConfig(document, env, readFile);
  } catch (error) {
    caught = error;
  }
  expect(caught, 'validation should have thrown').to.be.instanceOf(ConfigError);
  const lines = (caught as ConfigError).message.split('\n');
  expect(lines[0]).to.equal('invalid cluster configuration:');
  return lines.slice(1).map((line) => line.trim());
}

// Exactly one problem, at `at`, whose text matches `text`.
function expectOnly(document: unknown, at: string, text: RegExp | string, env: NodeJS.ProcessEnv = NO_ENV): void {
  const found = problems(document, env);
  expect(found, found.join(' | ')).to.have.lengthOf(1);
  expectProblem(found, at, text);
}

function expectProblem(found: string[], at: string, text: RegExp | string): void {
  const atPath = found.filter((line) => line.startsWith(`${at}: `));
  expect(atPath, `no problem at ${at} in: ${found.join(' | ')}`).to.not.be.empty;
  const matches = atPath.some((line) => (typeof text === 'string' ? line.includes(text) : text.test(line)));
  expect(matches, `${at}: expected ${String(text)} in: ${atPath.join(' | ')}`).to.equal(true);
}

describe('cluster config', () => {
  describe('a valid configuration', () => {
    it('fills in the defaults for a minimal file: shm at /dev/shm and the engine defaults', () => {
      const config = validate({ cluster: 'orders', secret: SECRET, replicas: [{ id: 0, control: '127.0.0.1:7400' }] });
      expect(config.cluster).to.equal('orders');
      expect(Buffer.isBuffer(config.secret)).to.equal(true);
      expect(config.secret.equals(Buffer.from(SECRET, 'utf8'))).to.equal(true);
      expect(config.fabric).to.deep.equal({ backend: 'shm', shmRoot: '/dev/shm' });
      expect(config.replicas).to.deep.equal([{ id: 0, host: '127.0.0.1', port: 7400 }]);
      expect(config.engine).to.deep.equal({
        logBytes: 64 << 20,
        maxEntryBytes: 1 << 20,
        pipelineDepth: 8,
        idleStrategy: 'backoff',
        failureDetector: { readIntervalUs: 100, heartbeatIntervalUs: 20, failureReads: 6 },
        linkResetMs: 3000,
        wedgedLinkRestartMs: 30_000,
        unknownOutcomeMs: 5000,
      });
      expect(config.engine).to.deep.equal(engineDefaults);
    });

    it('hands out copies of the defaults, never engineDefaults itself', () => {
      const first = validate(doc());
      expect(first.engine).to.not.equal(engineDefaults);
      expect(first.engine.failureDetector).to.not.equal(engineDefaults.failureDetector);
      first.engine.logBytes = 1 << 20;
      first.engine.failureDetector.failureReads = 50;
      expect(engineDefaults.logBytes).to.equal(64 << 20);
      expect(engineDefaults.failureDetector.failureReads).to.equal(6);
      const second = validate(doc({ engine: { pipelineDepth: 4 } }));
      expect(second.engine.failureDetector).to.not.equal(engineDefaults.failureDetector);
      expect(second.engine.failureDetector).to.deep.equal(engineDefaults.failureDetector);
      expect(second.engine.logBytes).to.equal(64 << 20);
    });

    it('sorts the replicas by id', () => {
      const config = validate(
        doc({
          replicas: [
            { id: 2, control: 'c.example:7402' },
            { id: 0, control: 'a.example:7400' },
            { id: 3, control: 'd.example:7403' },
            { id: 1, control: 'b.example:7401' },
          ],
        }),
      );
      expect(config.replicas.map((replica) => replica.id)).to.deep.equal([0, 1, 2, 3]);
      expect(config.replicas.map((replica) => `${replica.host}:${replica.port}`)).to.deep.equal([
        'a.example:7400',
        'b.example:7401',
        'c.example:7402',
        'd.example:7403',
      ]);
    });

    it('takes a full configuration as written', () => {
      const config = validate(
        doc({
          cluster: 'orders.eu-1_b',
          fabric: { backend: 'verbs', device: 'mlx5_0', port: 2, gidIndex: 3 },
          engine: {
            logBytes: 1 << 20,
            maxEntryBytes: 4096,
            pipelineDepth: 16,
            idleStrategy: 'spin',
            failureDetector: { readIntervalUs: 2000, heartbeatIntervalUs: 500, failureReads: 10 },
            linkResetMs: 1500,
            wedgedLinkRestartMs: 0,
            unknownOutcomeMs: 250,
          },
        }),
      );
      expect(config.cluster).to.equal('orders.eu-1_b');
      expect(config.fabric).to.deep.equal({ backend: 'verbs', device: 'mlx5_0', port: 2, gidIndex: 3 });
      expect(config.engine).to.deep.equal({
        logBytes: 1 << 20,
        maxEntryBytes: 4096,
        pipelineDepth: 16,
        idleStrategy: 'spin',
        failureDetector: { readIntervalUs: 2000, heartbeatIntervalUs: 500, failureReads: 10 },
        linkResetMs: 1500,
        wedgedLinkRestartMs: 0,
        unknownOutcomeMs: 250,
      });
    });

    it('accepts the largest cluster (16 replicas)', () => {
      expect(validate(doc({ replicas: replicas(16) })).replicas).to.have.lengthOf(16);
    });
  });

  describe('ConfigError', () => {
    it('is an Error named ConfigError listing one problem a line', () => {
      const error = new ConfigError(['a: one', 'b: two']);
      expect(error).to.be.instanceOf(Error);
      expect(error.name).to.equal('ConfigError');
      expect(error.message).to.equal('invalid cluster configuration:\n  a: one\n  b: two');
    });

    it('reports several problems together, each with its path', () => {
      const found = problems({
        cluster: 'no spaces',
        secret: 'short',
        fabric: { backend: 'tcp' },
        replicas: [
          { id: 0, control: '10.0.0.1' },
          { id: 0, control: '10.0.0.2:7400', extra: true },
        ],
        engine: { pipelineDepth: 0, failureDetector: { failureReads: 1 } },
        bogus: 1,
      });
      expectProblem(found, 'cluster', 'must be 1-64 letters');
      expectProblem(found, 'secret', 'at least 16 bytes (got 5)');
      expectProblem(found, 'fabric.backend', 'must be "shm" or "verbs"');
      expectProblem(found, 'replicas[0].control', 'must be host:port');
      expectProblem(found, 'replicas[1].id', 'duplicate id 0 (also replicas[0])');
      expectProblem(found, 'replicas[1].extra', 'unknown field');
      expectProblem(found, 'engine.pipelineDepth', 'between 1 and 256, got 0');
      expectProblem(found, 'engine.failureDetector.failureReads', 'between 2 and');
      expectProblem(found, 'bogus', 'unknown field');
      expect(found).to.have.lengthOf(9);
    });
  });

  describe('the root', () => {
    for (const value of [null, [], 'config', 42, true, undefined]) {
      it(`refuses ${JSON.stringify(value) ?? 'undefined'} as the document`, () => {
        expect(problems(value)).to.deep.equal(['config: must be an object']);
      });
    }

    it('reports an unknown root field by its bare path, listing the known ones', () => {
      const found = problems(doc({ clustr: 'orders' }));
      expect(found).to.have.lengthOf(1);
      expect(found[0]).to.equal(
        'clustr: unknown field (known: cluster, secret, secretFile, fabric, replicas, engine)',
      );
    });

    it('requires a cluster name', () => {
      const document = doc();
      delete document['cluster'];
      expectOnly(document, 'cluster', 'must be a non-empty string');
      expectOnly(doc({ cluster: '' }), 'cluster', 'must be a non-empty string');
      expectOnly(doc({ cluster: 7 }), 'cluster', 'must be a non-empty string');
    });

    it('limits the cluster name to 64 letters, digits, ".", "_" and "-"', () => {
      expect(validate(doc({ cluster: 'x'.repeat(64) })).cluster).to.have.lengthOf(64);
      expectOnly(doc({ cluster: 'x'.repeat(65) }), 'cluster', 'must be 1-64 letters');
      expectOnly(doc({ cluster: 'a/b' }), 'cluster', 'must be 1-64 letters');
      expectOnly(doc({ cluster: 'ordérs' }), 'cluster', 'must be 1-64 letters');
    });
  });

  describe('the secret', () => {
    it('takes secret from the file as UTF-8 bytes', () => {
      const config = validate(doc({ secret: 'pässwörd-pässwörd' }));
      expect(config.secret.equals(Buffer.from('pässwörd-pässwörd', 'utf8'))).to.equal(true);
    });

    it('reads secretFile through readFile and trims surrounding whitespace', () => {
      const asked: string[] = [];
      const document = doc({ secretFile: '/run/secrets/mu' });
      delete document['secret'];
      const config = validate(document, NO_ENV, (file) => {
        asked.push(file);
        return Buffer.from(`  ${LONG_SECRET}\r\n`, 'utf8');
      });
      expect(asked).to.deep.equal(['/run/secrets/mu']);
      expect(config.secret.toString('utf8')).to.equal(LONG_SECRET);
    });

    it('keeps a binary secretFile byte for byte (no UTF-8 round trip)', () => {
      const bytes = Buffer.from([0xff, 0xfe, 0x80, 0x00, 0xc3, 0x28, 0x9f, 0x01, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x17]);
      const document = doc({ secretFile: '/run/secrets/binary' });
      delete document['secret'];
      const config = validate(document, NO_ENV, () => Buffer.concat([bytes, Buffer.from('\n')]));
      expect(config.secret.equals(bytes)).to.equal(true);
    });

    it('reads secretFile from disk by default', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-config-secret-'));
      try {
        const file = path.join(dir, 'secret');
        fs.writeFileSync(file, `${LONG_SECRET}\n`);
        const document = doc({ secretFile: file });
        delete document['secret'];
        expect(validateClusterConfig(document, NO_ENV).secret.toString('utf8')).to.equal(LONG_SECRET);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('falls back to MU_CLUSTER_SECRET from the env object', () => {
      const document = doc();
      delete document['secret'];
      const config = validate(document, { MU_CLUSTER_SECRET: LONG_SECRET });
      expect(config.secret.toString('utf8')).to.equal(LONG_SECRET);
    });

    it('prefers the file\'s secret or secretFile to MU_CLUSTER_SECRET', () => {
      const env = { MU_CLUSTER_SECRET: LONG_SECRET };
      expect(validate(doc(), env).secret.toString('utf8')).to.equal(SECRET);
      const document = doc({ secretFile: '/s' });
      delete document['secret'];
      expect(validate(document, env, () => Buffer.from('from-the-secret-file')).secret.toString('utf8')).to.equal(
        'from-the-secret-file',
      );
    });

    it('requires one of secret, secretFile or MU_CLUSTER_SECRET (an empty variable counts as unset)', () => {
      const document = doc();
      delete document['secret'];
      expectOnly(document, 'secret', /missing: set secret, secretFile or the MU_CLUSTER_SECRET/);
      expectOnly(document, 'secret', /missing/, { MU_CLUSTER_SECRET: '' });
      expectOnly(document, 'secret', /missing/, { OTHER: LONG_SECRET });
    });

    it('refuses secret and secretFile together, without reading the file', () => {
      expectOnly(doc({ secretFile: '/run/secrets/mu' }), 'secret', 'give secret or secretFile, not both');
    });

    it(`refuses a secret shorter than ${minSecretBytes} bytes, however it is given`, () => {
      expect(minSecretBytes).to.equal(16);
      expectOnly(doc({ secret: SECRET.slice(1) }), 'secret', 'must be at least 16 bytes (got 15)');
      const withoutSecret = doc();
      delete withoutSecret['secret'];
      expectOnly(withoutSecret, 'secret', 'must be at least 16 bytes (got 3)', { MU_CLUSTER_SECRET: 'abc' });
      const withFile = doc({ secretFile: '/s' });
      delete withFile['secret'];
      // Whitespace does not count: the file holds 16 bytes, 14 of them the secret.
      const found = problems(withFile, NO_ENV, () => Buffer.from(' 0123456789abcd\n'));
      expect(found).to.deep.equal(['secret: must be at least 16 bytes (got 14)']);
      // Bytes, not characters: 8 two-byte characters are enough.
      expect(validate(doc({ secret: 'é'.repeat(8) })).secret).to.have.lengthOf(16);
    });

    it('reports an unreadable secretFile with its path and the cause', () => {
      const document = doc({ secretFile: '/run/secrets/missing' });
      delete document['secret'];
      const found = problems(document, { MU_CLUSTER_SECRET: LONG_SECRET }, () => {
        throw new Error('ENOENT: no such file or directory');
      });
      expect(found).to.deep.equal([
        'secretFile: cannot read /run/secrets/missing: ENOENT: no such file or directory',
      ]);
    });

    it('refuses a secret or secretFile that is not a non-empty string', () => {
      expectOnly(doc({ secret: '' }), 'secret', 'must be a non-empty string');
      expectOnly(doc({ secret: 12345678901234567890 }), 'secret', 'must be a non-empty string');
      const document = doc({ secretFile: ['/s'] });
      delete document['secret'];
      expectOnly(document, 'secretFile', 'must be a non-empty string');
    });
  });

  describe('the fabric', () => {
    it('defaults to shm at /dev/shm, also when only the backend is named', () => {
      expect(validate(doc({ fabric: { backend: 'shm' } })).fabric).to.deep.equal({ backend: 'shm', shmRoot: '/dev/shm' });
    });

    it('takes an absolute shmRoot and refuses a relative one', () => {
      expect(validate(doc({ fabric: { backend: 'shm', shmRoot: '/tmp/mu' } })).fabric).to.deep.equal({
        backend: 'shm',
        shmRoot: '/tmp/mu',
      });
      expectOnly(doc({ fabric: { backend: 'shm', shmRoot: 'tmp/mu' } }), 'fabric.shmRoot', 'must be an absolute path');
      expectOnly(doc({ fabric: { backend: 'shm', shmRoot: '' } }), 'fabric.shmRoot', 'must be a non-empty string');
    });

    it('refuses the verbs-only fields on shm, each by its path', () => {
      const found = problems(doc({ fabric: { backend: 'shm', device: 'mlx5_0', port: 1, gidIndex: 0 } }));
      expect(found).to.have.lengthOf(3);
      for (const key of ['device', 'port', 'gidIndex']) {
        expectProblem(found, `fabric.${key}`, 'applies to the verbs backend only');
      }
    });

    it('needs a device for verbs', () => {
      expectOnly(doc({ fabric: { backend: 'verbs' } }), 'fabric.device', 'must be a non-empty string');
      expectOnly(doc({ fabric: { backend: 'verbs', device: 'mlx5 0' } }), 'fabric.device', 'an RDMA device name');
    });

    it('defaults verbs to port 1 and gidIndex 1', () => {
      expect(validate(doc({ fabric: { backend: 'verbs', device: 'rxe0' } })).fabric).to.deep.equal({
        backend: 'verbs',
        device: 'rxe0',
        port: 1,
        gidIndex: 1,
      });
      expect(validate(doc({ fabric: { backend: 'verbs', device: 'rxe0', gidIndex: 0 } })).fabric).to.include({ gidIndex: 0 });
    });

    it('refuses shmRoot on verbs', () => {
      expectOnly(doc({ fabric: { backend: 'verbs', device: 'rxe0', shmRoot: '/dev/shm' } }), 'fabric.shmRoot', 'shm backend only');
    });

    it('checks the verbs port (1-255) and gidIndex (0-255)', () => {
      const verbs = (extra: Doc) => doc({ fabric: { backend: 'verbs', device: 'rxe0', ...extra } });
      expectOnly(verbs({ port: 0 }), 'fabric.port', 'between 1 and 255, got 0');
      expectOnly(verbs({ port: 256 }), 'fabric.port', 'between 1 and 255, got 256');
      expectOnly(verbs({ port: '1' }), 'fabric.port', 'must be an integer');
      expectOnly(verbs({ gidIndex: -1 }), 'fabric.gidIndex', 'between 0 and 255, got -1');
      expectOnly(verbs({ gidIndex: 1.5 }), 'fabric.gidIndex', 'must be an integer');
      const both = problems(verbs({ port: 300, gidIndex: 300 }));
      expect(both).to.have.lengthOf(2);
    });

    it('refuses an unknown or missing backend', () => {
      expectOnly(doc({ fabric: { backend: 'tcp' } }), 'fabric.backend', 'must be "shm" or "verbs"');
      expectOnly(doc({ fabric: {} }), 'fabric.backend', 'must be "shm" or "verbs"');
      expectOnly(doc({ fabric: { backend: 'SHM' } }), 'fabric.backend', 'must be "shm" or "verbs"');
    });

    it('refuses a fabric that is not an object, and unknown fabric fields', () => {
      expectOnly(doc({ fabric: 'shm' }), 'fabric', 'must be an object');
      expectOnly(doc({ fabric: null }), 'fabric', 'must be an object');
      expectOnly(doc({ fabric: { backend: 'shm', shmroot: '/x' } }), 'fabric.shmroot', 'unknown field (known: backend, shmRoot');
    });
  });

  describe('the replicas', () => {
    it('must be a non-empty array of at most 16', () => {
      const missing = doc();
      delete missing['replicas'];
      expectOnly(missing, 'replicas', 'must be a non-empty array');
      expectOnly(doc({ replicas: [] }), 'replicas', 'must be a non-empty array');
      expectOnly(doc({ replicas: { 0: { id: 0, control: 'a:1' } } }), 'replicas', 'must be a non-empty array');
      expectOnly(doc({ replicas: replicas(17) }), 'replicas', 'at most 16 replicas');
    });

    it('reports an entry that is not an object, and unknown entry fields, by index', () => {
      const list = replicas(3) as unknown[];
      list[1] = '10.0.0.2:7400';
      expectOnly(doc({ replicas: list }), 'replicas[1]', 'must be an object');
      const typo = replicas(3);
      (typo[2] as Doc)['adress'] = 'x';
      expectOnly(doc({ replicas: typo }), 'replicas[2].adress', 'unknown field (known: id, control)');
    });

    it('needs ids 0..n-1: out of range, negative, missing or non-integer ids are refused', () => {
      const list = replicas(3);
      (list[2] as Doc)['id'] = 3;
      expectOnly(doc({ replicas: list }), 'replicas[2].id', 'must be between 0 and 2, got 3');
      (list[2] as Doc)['id'] = -1;
      expectOnly(doc({ replicas: list }), 'replicas[2].id', 'must be between 0 and 2, got -1');
      (list[2] as Doc)['id'] = 1.5;
      expectOnly(doc({ replicas: list }), 'replicas[2].id', 'must be an integer');
      (list[2] as Doc)['id'] = '2';
      expectOnly(doc({ replicas: list }), 'replicas[2].id', 'must be an integer');
      delete (list[2] as Doc)['id'];
      expectOnly(doc({ replicas: list }), 'replicas[2].id', 'must be an integer');
    });

    it('refuses duplicate ids, naming the first holder', () => {
      const list = [
        { id: 1, control: 'a:7400' },
        { id: 1, control: 'b:7400' },
        { id: 1, control: 'c:7400' },
      ];
      const found = problems(doc({ replicas: list }));
      expect(found).to.deep.equal([
        'replicas[1].id: duplicate id 1 (also replicas[0])',
        'replicas[2].id: duplicate id 1 (also replicas[0])',
      ]);
    });

    it('refuses duplicate addresses, naming the first holder; host names compare case-insensitively', () => {
      const found = problems(
        doc({
          replicas: [
            { id: 0, control: 'node-a.example:7400' },
            { id: 1, control: 'node-a.example:7400' },
            { id: 2, control: 'NODE-A.example:7400' },
          ],
        }),
      );
      expect(found).to.have.lengthOf(2);
      expectProblem(found, 'replicas[1].control', 'node-a.example:7400 is also replicas[0]\'s address');
      expectProblem(found, 'replicas[2].control', 'is also replicas[0]\'s address');
      // Same host, different ports: fine.
      const config = validate(
        doc({ replicas: [0, 1, 2].map((id) => ({ id, control: `[::1]:${7400 + id}` })) }),
      );
      expect(config.replicas.map((replica) => replica.port)).to.deep.equal([7400, 7401, 7402]);
    });

    it('reports a bad id and a bad address of the same entry together', () => {
      const list = replicas(2);
      list[1] = { id: 9, control: 'no-port' };
      const found = problems(doc({ replicas: list }));
      expect(found).to.have.lengthOf(2);
      expectProblem(found, 'replicas[1].id', 'got 9');
      expectProblem(found, 'replicas[1].control', 'must be host:port');
    });

    it('refuses a missing or empty control address', () => {
      expectOnly(doc({ replicas: [{ id: 0 }] }), 'replicas[0].control', 'must be a non-empty string');
      expectOnly(doc({ replicas: [{ id: 0, control: '' }] }), 'replicas[0].control', 'must be a non-empty string');
    });

    const badAddresses: Array<[string, RegExp]> = [
      ['10.0.0.1', /must be host:port/],
      ['10.0.0.1:', /must be host:port/],
      [':7400', /must be host:port/],
      ['10.0.0.1:0', /port 0 is out of range/],
      ['10.0.0.1:70000', /port 70000 is out of range/],
      ['10.0.0.1:65536', /port 65536 is out of range/],
      ['10.0.0.1:123456', /must be host:port/],
      ['10.0.0.1:http', /must be host:port/],
      ['10.0.0.1:-1', /must be host:port/],
      ['::1:7400', /must be host:port \(IPv6 in brackets\)/],
      ['[::1]', /must be host:port/],
      ['[not-ipv6]:7400', /is not an IPv6 address/],
      ['[10.0.0.1]:7400', /is not an IPv6 address/],
      ['bad host:7400', /"bad host" is neither an IP address nor a host name/],
      ['bad_host:7400', /neither an IP address nor a host name/],
      ['host!:7400', /neither an IP address nor a host name/],
      ['-host:7400', /neither an IP address nor a host name/],
      ['host-:7400', /neither an IP address nor a host name/],
      ['a..b:7400', /neither an IP address nor a host name/],
      ['.example:7400', /neither an IP address nor a host name/],
      ['999.1.1.1:7400', /neither an IP address nor a host name/],
      ['10.0.0.256:7400', /neither an IP address nor a host name/],
      [`${'a'.repeat(64)}.example:7400`, /neither an IP address nor a host name/],
      [`${'abcdefghi.'.repeat(26)}com:7400`, /neither an IP address nor a host name/],
    ];
    for (const [text, reason] of badAddresses) {
      it(`refuses the address ${JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}...` : text)}`, () => {
        const answer = parseAddress(text);
        expect(answer).to.be.a('string');
        expect(answer).to.match(reason);
        expectOnly(doc({ replicas: [{ id: 0, control: text }] }), 'replicas[0].control', reason);
      });
    }

    const goodAddresses: Array<[string, string, number]> = [
      ['10.0.0.1:7400', '10.0.0.1', 7400],
      ['127.0.0.1:1', '127.0.0.1', 1],
      ['127.0.0.1:65535', '127.0.0.1', 65535],
      ['[::1]:7400', '::1', 7400],
      ['[fe80::1:2:3:4]:7400', 'fe80::1:2:3:4', 7400],
      ['[::ffff:10.0.0.1]:7400', '::ffff:10.0.0.1', 7400],
      ['localhost:7400', 'localhost', 7400],
      ['mu-0.orders.svc.cluster.local:7400', 'mu-0.orders.svc.cluster.local', 7400],
      ['Node1:7400', 'Node1', 7400],
      ['1node.example:7400', '1node.example', 7400],
      [`${'a'.repeat(63)}.example:7400`, `${'a'.repeat(63)}.example`, 7400],
    ];
    for (const [text, host, port] of goodAddresses) {
      it(`accepts the address ${JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}...` : text)}`, () => {
        expect(parseAddress(text)).to.deep.equal({ host, port });
        expect(validate(doc({ replicas: [{ id: 0, control: text }] })).replicas).to.deep.equal([{ id: 0, host, port }]);
      });
    }
  });

  describe('the engine', () => {
    const engine = (settings: Doc) => doc({ engine: settings });
    const detector = (settings: Doc) => doc({ engine: { failureDetector: settings } });

    it('fills in the defaults a partial engine leaves out', () => {
      const config = validate(engine({ pipelineDepth: 32, failureDetector: { failureReads: 10 } }));
      expect(config.engine).to.deep.equal({
        ...engineDefaults,
        pipelineDepth: 32,
        failureDetector: { ...engineDefaults.failureDetector, failureReads: 10 },
      });
    });

    it('refuses an engine or failureDetector that is not an object', () => {
      expectOnly(engine([] as unknown as Doc), 'engine', 'must be an object');
      expectOnly(detector(null as unknown as Doc), 'engine.failureDetector', 'must be an object');
      expectOnly(doc({ engine: { failureDetector: 5 } }), 'engine.failureDetector', 'must be an object');
    });

    it('reports unknown engine and failureDetector fields by their paths', () => {
      expectOnly(engine({ logbytes: 1 << 20 }), 'engine.logbytes', 'unknown field (known: logBytes, maxEntryBytes');
      expectOnly(
        detector({ readInterval: 100 }),
        'engine.failureDetector.readInterval',
        'unknown field (known: readIntervalUs, heartbeatIntervalUs, failureReads)',
      );
    });

    it('refuses a log smaller than four of the largest entries', () => {
      expectOnly(engine({ logBytes: 1 << 20, maxEntryBytes: (1 << 18) + 1 }), 'engine.logBytes', '4 x 262145 bytes');
      expect(validate(engine({ logBytes: 1 << 20, maxEntryBytes: 1 << 18 })).engine.logBytes).to.equal(1 << 20);
      // Against the default maxEntryBytes (1 MiB, the engine's largest entry) too.
      expectOnly(engine({ logBytes: 128 << 10 }), 'engine.logBytes', '4 x 1048576 bytes');
      expect(validate(engine({ logBytes: 4 << 20 })).engine.maxEntryBytes).to.equal(1 << 20);
      expectOnly(engine({ logBytes: (4 << 20) - 8 }), 'engine.logBytes', '4 x 1048576 bytes');
    });

    const outOfRange: Array<[string, number, string]> = [
      ['logBytes', (64 << 10) - 1, 'between 65536 and 68719476736'],
      ['logBytes', 2 ** 36 + 1, 'between 65536 and 68719476736'],
      ['maxEntryBytes', 255, 'between 256 and 1048576'],
      ['maxEntryBytes', (1 << 20) + 1, 'between 256 and 1048576'],
      ['pipelineDepth', 0, 'between 1 and 256'],
      ['pipelineDepth', 257, 'between 1 and 256'],
    ];
    for (const [key, value, range] of outOfRange) {
      it(`refuses engine.${key} = ${value}`, () => {
        const found = problems(engine({ [key]: value, ...(key === 'maxEntryBytes' ? { logBytes: 2 ** 36 } : {}) }));
        expect(found).to.deep.equal([`engine.${key}: must be ${range}, got ${value}`]);
      });
    }

    it('accepts the engine limits themselves', () => {
      const config = validate(engine({ logBytes: 2 ** 36, maxEntryBytes: 1 << 20, pipelineDepth: 256 }));
      expect(config.engine).to.include({ logBytes: 2 ** 36, maxEntryBytes: 1 << 20, pipelineDepth: 256 });
      expect(validate(engine({ logBytes: 64 << 10, maxEntryBytes: 256, pipelineDepth: 1 })).engine.logBytes).to.equal(
        64 << 10,
      );
    });

    for (const value of [1.5, '8', null, true, [8], Number.NaN]) {
      it(`refuses the non-integer ${Number.isNaN(value) ? 'NaN' : JSON.stringify(value)} for engine and detector integers`, () => {
        for (const key of ['logBytes', 'maxEntryBytes', 'pipelineDepth']) {
          expectOnly(engine({ [key]: value }), `engine.${key}`, 'must be an integer');
        }
        for (const key of ['readIntervalUs', 'heartbeatIntervalUs', 'failureReads']) {
          expectOnly(detector({ [key]: value }), `engine.failureDetector.${key}`, 'must be an integer');
        }
      });
    }

    it('takes the three idle strategies and refuses others', () => {
      for (const idleStrategy of ['backoff', 'yield', 'spin']) {
        expect(validate(engine({ idleStrategy })).engine.idleStrategy).to.equal(idleStrategy);
      }
      expectOnly(engine({ idleStrategy: 'sleep' }), 'engine.idleStrategy', 'must be "backoff", "yield" or "spin"');
      expectOnly(engine({ idleStrategy: 1 }), 'engine.idleStrategy', 'must be "backoff", "yield" or "spin"');
    });

    it('refuses a heartbeat no faster than the reads', () => {
      expectOnly(
        detector({ readIntervalUs: 100, heartbeatIntervalUs: 100 }),
        'engine.failureDetector.heartbeatIntervalUs',
        'must be shorter than readIntervalUs (100)',
      );
      expectOnly(
        detector({ readIntervalUs: 100, heartbeatIntervalUs: 150 }),
        'engine.failureDetector.heartbeatIntervalUs',
        'must be shorter than readIntervalUs (100)',
      );
      // Against the default read interval too.
      expectOnly(detector({ heartbeatIntervalUs: 100 }), 'engine.failureDetector.heartbeatIntervalUs', '(100)');
      expect(validate(detector({ readIntervalUs: 100, heartbeatIntervalUs: 99 })).engine.failureDetector.heartbeatIntervalUs).to.equal(99);
    });

    it('derives the heartbeat from readIntervalUs when it is not given (a fifth, at least 1 us)', () => {
      expect(validate(detector({ readIntervalUs: 2000 })).engine.failureDetector).to.deep.equal({
        readIntervalUs: 2000,
        heartbeatIntervalUs: 400,
        failureReads: 6,
      });
      expect(validate(detector({ readIntervalUs: 12 })).engine.failureDetector.heartbeatIntervalUs).to.equal(2);
      expect(validate(detector({ readIntervalUs: 10 })).engine.failureDetector.heartbeatIntervalUs).to.equal(2);
    });

    it('checks the detector ranges', () => {
      expectOnly(detector({ readIntervalUs: 9 }), 'engine.failureDetector.readIntervalUs', 'between 10 and 10000000, got 9');
      expectOnly(detector({ readIntervalUs: 10_000_001 }), 'engine.failureDetector.readIntervalUs', 'got 10000001');
      expectOnly(detector({ heartbeatIntervalUs: 0 }), 'engine.failureDetector.heartbeatIntervalUs', 'between 1 and');
      expectOnly(detector({ failureReads: 1 }), 'engine.failureDetector.failureReads', 'between 2 and 998, got 1');
      // maxScore = failureReads + 2 must stay within the engine's 1000.
      expectOnly(
        detector({ readIntervalUs: 10, failureReads: 999 }),
        'engine.failureDetector.failureReads',
        'between 2 and 998, got 999',
      );
      expect(validate(detector({ readIntervalUs: 10, failureReads: 998 })).engine.failureDetector.failureReads).to.equal(998);
    });

    it('limits the detection window to 20 s, so the scaled timers stay within the engine\'s limits', () => {
      expect(
        validate(detector({ readIntervalUs: 10_000_000, failureReads: 2 })).engine.failureDetector.readIntervalUs,
      ).to.equal(10_000_000);
      expectOnly(
        detector({ readIntervalUs: 10_000_000, failureReads: 3 }),
        'engine.failureDetector',
        'the detection window readIntervalUs x failureReads (30000000 us) must be at most 20000000 us',
      );
      expectOnly(detector({ readIntervalUs: 100_000, failureReads: 201 }), 'engine.failureDetector', '(20100000 us)');
    });
  });

  describe('loadClusterConfig', () => {
    let dir = '';
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mu-config-'));
    });
    afterEach(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('loads and validates a file, with the env given and secretFile read from disk', () => {
      const file = path.join(dir, 'cluster.json');
      fs.writeFileSync(file, JSON.stringify({ cluster: 'orders', replicas: replicas(3) }, null, 2));
      const config = loadClusterConfig(file, { MU_CLUSTER_SECRET: LONG_SECRET });
      expect(config.secret.toString('utf8')).to.equal(LONG_SECRET);
      expect(config.replicas).to.have.lengthOf(3);

      const secretFile = path.join(dir, 'secret');
      fs.writeFileSync(secretFile, `${SECRET}\n`);
      fs.writeFileSync(file, JSON.stringify({ cluster: 'orders', secretFile, replicas: replicas(1) }));
      expect(loadClusterConfig(file, NO_ENV).secret.toString('utf8')).to.equal(SECRET);
    });

    it('reports a missing file with its path', () => {
      const file = path.join(dir, 'absent.json');
      expect(() => loadClusterConfig(file, NO_ENV))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(new RegExp(`cannot read ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
    });

    it('reports invalid JSON with the file\'s path', () => {
      const file = path.join(dir, 'broken.json');
      fs.writeFileSync(file, '{ "cluster": "orders", }');
      expect(() => loadClusterConfig(file, NO_ENV))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes(`${file} is not valid JSON: `);
    });

    it('reports an unreadable secretFile named by the file', () => {
      const file = path.join(dir, 'cluster.json');
      const secretFile = path.join(dir, 'no-such-secret');
      fs.writeFileSync(file, JSON.stringify({ cluster: 'orders', secretFile, replicas: replicas(1) }));
      expect(() => loadClusterConfig(file, NO_ENV))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes(`secretFile: cannot read ${secretFile}: ENOENT`);
    });

    it('passes the validation problems through', () => {
      const file = path.join(dir, 'cluster.json');
      fs.writeFileSync(file, JSON.stringify(doc({ replicas: [{ id: 1, control: '10.0.0.1:7400' }] })));
      expect(() => loadClusterConfig(file, NO_ENV))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes('replicas[0].id: must be between 0 and 0, got 1');
    });
  });

  describe('nativeReplicaOptions', () => {
    it('builds the shm options from a default configuration', () => {
      const config = validate(doc({ cluster: 'orders' }));
      expect(nativeReplicaOptions(config, 1)).to.deep.equal({
        nodeId: 1,
        replicaCount: 3,
        fabric: 'shm',
        clusterName: 'orders',
        shmRoot: '/dev/shm',
        logBytes: 64 << 20,
        maxEntryBytes: 1 << 20,
        pipelineDepth: 8,
        idleStrategy: 'backoff',
        readIntervalUs: 100,
        heartbeatIntervalUs: 20,
        maxScore: 8,
        failureThreshold: 2,
        recoveryThreshold: 6,
        candidateTimeoutUs: 2000,
        candidateBackoffUs: 600,
        fateSharingTimeoutUs: 10_000,
      });
    });

    it('builds the verbs options, without shmRoot', () => {
      const config = validate(
        doc({
          replicas: replicas(5),
          fabric: { backend: 'verbs', device: 'mlx5_1', port: 2, gidIndex: 3 },
          engine: { logBytes: 1 << 20, maxEntryBytes: 4096, pipelineDepth: 4, idleStrategy: 'yield' },
        }),
      );
      const options = nativeReplicaOptions(config, 4);
      expect(options).to.include({
        nodeId: 4,
        replicaCount: 5,
        fabric: 'verbs',
        verbsDevice: 'mlx5_1',
        verbsPort: 2,
        verbsGidIndex: 3,
        logBytes: 1 << 20,
        maxEntryBytes: 4096,
        pipelineDepth: 4,
        idleStrategy: 'yield',
      });
      expect(options).to.not.have.property('shmRoot');
      const shm = nativeReplicaOptions(validate(doc()), 0);
      for (const key of ['verbsDevice', 'verbsPort', 'verbsGidIndex']) expect(shm).to.not.have.property(key);
      expect(nativeReplicaOptions(validate(doc({ fabric: { backend: 'verbs', device: 'rxe0' } })), 0)).to.include({
        verbsPort: 1,
        verbsGidIndex: 1,
      });
    });

    it('counts the replicas', () => {
      for (const count of [1, 2, 7, 16]) {
        expect(nativeReplicaOptions(validate(doc({ replicas: replicas(count) })), 0).replicaCount).to.equal(count);
      }
    });

    it('maps the detector: maxScore = failureReads + 2, failureThreshold 2, hysteresis above it', () => {
      for (const failureReads of [2, 3, 6, 10, 100, 998]) {
        const config = validate(doc({ engine: { failureDetector: { readIntervalUs: 10, failureReads } } }));
        const options = nativeReplicaOptions(config, 0);
        expect(options.maxScore).to.equal(failureReads + 2);
        expect(options.failureThreshold).to.equal(2);
        // failureReads reads without progress take a peer from maxScore to failureThreshold.
        expect(options.maxScore! - options.failureThreshold!).to.equal(failureReads);
        // The engine requires failureThreshold < recoveryThreshold <= maxScore <= 1000.
        expect(options.recoveryThreshold).to.be.greaterThan(options.failureThreshold!);
        expect(options.recoveryThreshold).to.be.at.most(options.maxScore!);
        expect(options.maxScore).to.be.at.most(1000);
      }
      const slow = nativeReplicaOptions(validate(doc({ engine: { failureDetector: { failureReads: 10 } } })), 0);
      expect(slow).to.include({ maxScore: 12, failureThreshold: 2, recoveryThreshold: 9 });
      const quick = nativeReplicaOptions(validate(doc({ engine: { failureDetector: { failureReads: 2 } } })), 0);
      expect(quick).to.include({ maxScore: 4, failureThreshold: 2, recoveryThreshold: 3 });
    });

    it('passes the detector intervals through', () => {
      const config = validate(doc({ engine: { failureDetector: { readIntervalUs: 2000, heartbeatIntervalUs: 500 } } }));
      expect(nativeReplicaOptions(config, 0)).to.include({ readIntervalUs: 2000, heartbeatIntervalUs: 500 });
    });

    it('keeps the timers at the engine defaults (2000/500/10000 us) for a short window', () => {
      const config = validate(doc({ engine: { failureDetector: { readIntervalUs: 10, failureReads: 2 } } }));
      expect(nativeReplicaOptions(config, 0)).to.include({
        candidateTimeoutUs: 2000,
        candidateBackoffUs: 500,
        fateSharingTimeoutUs: 10_000,
      });
    });

    it('scales the timers with the detection window (3, 1 and 10 windows)', () => {
      // A 20 ms window (2 ms reads x 10), the shared-core setting.
      const config = validate(doc({ engine: { failureDetector: { readIntervalUs: 2000, failureReads: 10 } } }));
      expect(nativeReplicaOptions(config, 0)).to.include({
        candidateTimeoutUs: 60_000,
        candidateBackoffUs: 20_000,
        fateSharingTimeoutUs: 200_000,
      });
      // Each timer leaves its floor on its own: a 1 ms window lifts only the backoff.
      const mixed = validate(doc({ engine: { failureDetector: { readIntervalUs: 100, failureReads: 10 } } }));
      expect(nativeReplicaOptions(mixed, 0)).to.include({
        candidateTimeoutUs: 3000,
        candidateBackoffUs: 1000,
        fateSharingTimeoutUs: 10_000,
      });
    });

    it('keeps the timers within the engine\'s limits at the largest window allowed', () => {
      for (const [readIntervalUs, failureReads] of [
        [10_000_000, 2],
        [20_000, 998],
      ] as const) {
        const config = validate(doc({ engine: { failureDetector: { readIntervalUs, failureReads } } }));
        const options = nativeReplicaOptions(config, 0);
        expect(options.candidateTimeoutUs).to.be.at.most(60_000_000);
        expect(options.candidateBackoffUs).to.be.at.most(60_000_000);
        expect(options.fateSharingTimeoutUs).to.be.at.most(600_000_000);
        expect(options.candidateTimeoutUs).to.equal(readIntervalUs * failureReads * 3);
      }
    });
  });
});
