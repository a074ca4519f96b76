// Loads the native addon built by `npm install` (cmake-js, build/Release/mu_native.node).
// Every TypeScript layer reaches native code through this module only.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export type FabricBackendName = 'shm' | 'verbs';

export interface NativeAddon {
  compiledFabricBackends(): FabricBackendName[];
}

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(repositoryRoot, 'build', 'Release', 'mu_native.node');

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(addonPath) as NativeAddon;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot load the native addon at ${addonPath} (run \`npm install\` to build it): ${reason}`);
  }
}

export const native: NativeAddon = loadAddon();
