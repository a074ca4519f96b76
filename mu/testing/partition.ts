// Network partitions on the shm fabric, for tests: each node's control file holds a mask
// of the nodes it cannot reach (native/fabric/shm/shm_layout.hpp, `unreachable_peers`, at
// byte 32), and every fabric operation between two such nodes fails as peer_unreachable,
// both ways, as across a cut link. The control plane (TCP) is not touched: this is an
// RDMA network that fails while the hosts still talk.
import fs from 'node:fs';
import path from 'node:path';

const UNREACHABLE_PEERS_OFFSET = 32;

function writeMask(shmRoot: string, cluster: string, node: number, mask: bigint): void {
  const file = path.join(shmRoot, `mu-${cluster}`, `node-${node}.control`);
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(mask);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, 8, UNREACHABLE_PEERS_OFFSET);
  } finally {
    fs.closeSync(fd);
  }
}

/** Cuts `node` off from every one of `peers` (over the fabric). */
export function cutOff(cluster: string, node: number, peers: number[], shmRoot = '/dev/shm'): void {
  writeMask(shmRoot, cluster, node, peers.reduce((mask, peer) => mask | (1n << BigInt(peer)), 0n));
}

/** Undoes cutOff(): `node` reaches every peer again. */
export function heal(cluster: string, node: number, shmRoot = '/dev/shm'): void {
  writeMask(shmRoot, cluster, node, 0n);
}
