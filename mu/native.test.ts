import { expect } from 'chai';

import { native } from './native.js';

describe('native addon', () => {
  it('loads and reports both fabric backends compiled in', () => {
    // scripts/install-system-deps.sh installs libibverbs, so a build without the verbs
    // backend means the build silently lost it: fail rather than pass.
    expect(native.compiledFabricBackends()).to.deep.equal(['shm', 'verbs']);
  });
});
