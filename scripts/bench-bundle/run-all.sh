#!/usr/bin/env bash
# Every benchmark the performance targets name, one after another in one run on one
# machine, each under its own time limit so one that hangs costs only its own figures.
# Run on a host prepared by unpack.sh (or one where `npm install` ran):
#   bash scripts/bench-bundle/run-all.sh <results-folder> [engine]
# With `engine`, only the engine's targets (issue 3), as its done-when list states them:
# latency three times, failover after SIGSTOP and SIGKILL 20 times each, a 60-second idle
# run, and the host's own scheduling gaps for context (about 2 minutes).
# Each benchmark's output goes to <results-folder>/<name>.txt and to stdout.
set -uo pipefail
out=${1:?results folder}
mkdir -p "$out"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
{
  echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
  echo "memory: $(grep MemTotal /proc/meminfo)"
  echo "kernel: $(uname -r); $(grep PRETTY_NAME /etc/os-release 2>/dev/null)"
  echo "RDMA devices: $(ls /dev/infiniband 2>&1 | tr '\n' ' ')"
  echo "git: $(git log -1 --format='%h %s' 2>/dev/null)"
} | tee "$out/machine.txt"

step() {
  local name=$1 limit_s=$2
  shift 2
  echo "== $name ($*), at most ${limit_s}s"
  local started=$SECONDS
  timeout --kill-after=5 "$limit_s" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started))s"
}

bench=./build/Release/mu-bench
if [ "${2:-}" = engine ]; then
  for run in 1 2 3; do step "engine-latency-$run" 40 "$bench" latency --iterations 20000; done
  step engine-failover-stop 120 "$bench" failover --runs 20
  step engine-failover-kill 120 "$bench" failover --runs 20 --signal kill
  step engine-idle 75 "$bench" idle --seconds 60
  step host-stalls 20 "$bench" stalls --seconds 10
  exit 0
fi
# The front ends first (their targets are ratios within one run), then the engine, then
# the front ends again to show the spread between runs.
step memcached 90 node --import tsx proxy/testing/bench_memcached.ts
step redis 150 node --import tsx proxy/testing/bench_redis.ts
step backend-socket 60 node --import tsx proxy/testing/bench_backend_socket.ts
step engine-latency 40 "$bench" latency --iterations 20000
step engine-latency-spin 40 "$bench" latency --iterations 20000 --idle spin
step fabric 30 ./build/Release/mu-fabric-bench
step engine-throughput 20 "$bench" throughput --seconds 5
step engine-failover-stop 75 "$bench" failover --runs 10
step engine-failover-kill 75 "$bench" failover --runs 10 --signal kill
step engine-idle 40 "$bench" idle --seconds 25
step memcached-again 90 node --import tsx proxy/testing/bench_memcached.ts
step redis-again 150 node --import tsx proxy/testing/bench_redis.ts
