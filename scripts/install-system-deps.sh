#!/usr/bin/env bash
# Installs the Debian packages that the build and the tests need. Idempotent: when every
# package is already installed it does nothing (no apt-get, no root needed), so it is safe
# to run from `npm install` and from `.ci/run` alike.
set -euo pipefail

packages=(
  # build: the addon, the native tests and benchmarks
  cmake g++ make pkg-config libgtest-dev
  # fabric backend `verbs`: libibverbs and the Soft-RoCE (rxe) user-space provider
  libibverbs-dev ibverbs-providers rdma-core ibverbs-utils
  # the verbs conformance suite runs inside QEMU with a stock Debian kernel (scripts/rdma-vm)
  qemu-system-x86 busybox-static kmod cpio iproute2 bc
  # the backends the proxy fronts, and the tools its compatibility tests and benchmarks
  # drive (redis-tools: redis-cli, redis-benchmark; nutcracker: twemproxy, the baseline)
  redis-server redis-tools memcached libmemcached-tools nutcracker
  # docker/compose.test.ts: `docker-compose config` checks the compose files (no engine needed)
  docker-compose
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}" >&2
run_as_root=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-system-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  run_as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${run_as_root[@]}" apt-get update -qq
"${run_as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
