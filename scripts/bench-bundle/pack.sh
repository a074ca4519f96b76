#!/usr/bin/env bash
# Packs what the benchmarks need to run on a bare x86-64 Linux host (glibc 2.34 or newer)
# that has none of the project's dependencies: Node, redis-server, redis-benchmark,
# memcached, nutcracker, the built engine and addon, and the runtime node_modules. The
# host's own C library is used (nothing here needs newer than GLIBC_2.34); every other
# shared library travels. Output: .bench-bundle/{system,tree}.tar.xz in the repository.
# Build first (npm install). Then, on the host, from a copy of the repository:
#   bash scripts/bench-bundle/unpack.sh && <benchmark commands>
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out="$root/.bench-bundle"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/bin" "$stage/lib"

binaries=(/usr/bin/node /usr/bin/redis-server /usr/bin/redis-benchmark /usr/bin/redis-cli
  /usr/bin/memcached /usr/sbin/nutcracker)
for binary in "${binaries[@]}"; do cp -L "$binary" "$stage/bin/"; done
# The C library and its loader stay the host's: copying them would tie every binary to
# this loader's path.
for binary in "${binaries[@]}" "$root/build/Release/mu-bench" "$root/build/Release/mu_native.node"; do
  ldd "$binary" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so' |
  while read -r library; do cp -L "$library" "$stage/lib/"; done
tar -C "$stage" -cJf "$out/system.tar.xz" bin lib

# Tooling only the build and the tests need stays behind.
(cd "$root" && tar -cJf "$out/tree.tar.xz" \
  --exclude=node_modules/typescript --exclude=node_modules/@types --exclude=node_modules/mocha \
  --exclude=node_modules/cmake-js --exclude=node_modules/node-addon-api \
  node_modules build/Release/mu-bench build/Release/mu-fabric-bench build/Release/mu_native.node)
ls -la "$out"
