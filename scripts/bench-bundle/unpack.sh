#!/usr/bin/env bash
# The other half of pack.sh, run on the bare host from the repository's root as root:
# system binaries to /opt/mu-bench-bundle (on PATH through /usr/local/bin links), node_modules
# and the built engine into the repository. A shared library the host already has keeps the
# host's copy (same soname, so the same or a newer compatible version); only the missing
# ones are offered through an ld.so.conf entry, so child processes find them too and the
# host's own programs never load ours.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
prefix=/opt/mu-bench-bundle
mkdir -p "$prefix"
tar -C "$prefix" -xJf "$root/.bench-bundle/system.tar.xz"
tar -C "$root" -xJf "$root/.bench-bundle/tree.tar.xz"
mkdir -p "$prefix/missing-lib"
for library in "$prefix"/lib/*; do
  name=$(basename "$library")
  ldconfig -p | awk '{print $1}' | grep -qxF "$name" || cp "$library" "$prefix/missing-lib/"
done
echo "$prefix/missing-lib" >/etc/ld.so.conf.d/mu-bench-bundle.conf
ldconfig
echo "libraries taken from the bundle: $(ls "$prefix/missing-lib" | tr '\n' ' ')"
# /usr/local/bin comes before /usr/bin on PATH: ours win over any the host has.
for binary in "$prefix"/bin/*; do ln -sf "$binary" "/usr/local/bin/$(basename "$binary")"; done
# The benchmarks and the adapters name these by absolute path (Debian's).
for path in /usr/sbin/nutcracker /usr/bin/redis-benchmark /usr/bin/redis-server /usr/bin/memcached; do
  [ -e "$path" ] || ln -sf "$prefix/bin/$(basename "$path")" "$path"
done
node --version && redis-server --version && memcached --version
