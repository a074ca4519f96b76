#!/usr/bin/env bash
# Runs the fabric conformance suite against the `verbs` backend on Soft-RoCE (rxe) inside
# a QEMU guest (software emulation: no KVM, no RDMA hardware or host kernel support
# needed). See README.md in this folder.
#
# Usage:
#   run-verbs-suite.sh                  the conformance suite (build/Release/mu-fabric-tests)
#   run-verbs-suite.sh -- CMD [ARG...]  any command instead, run from the repository root
#
# The guest command sees MU_FABRIC_BACKENDS=verbs MU_VERBS_DEVICE=rxe0 MU_VERBS_GID_INDEX=1
# and any GTEST_* variables of the caller. RDMA_VM_TIMEOUT_S bounds the whole VM run
# (default 300); RDMA_VM_MEMORY_MB sizes the guest (default 1024; the multi-host test,
# with three Node proxies, wants 2048).
#
# Exit status: the guest command's status when it ran; otherwise non-zero with a reason
# (2: setup, 3: the VM did not boot, 4: no rxe0, 5: the command did not finish).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/.cache/rdma-vm"
timeout_s=${RDMA_VM_TIMEOUT_S:-300}
memory_mb=${RDMA_VM_MEMORY_MB:-1024}
[[ "$memory_mb" =~ ^[0-9]+$ ]] || { echo "rdma-vm: FAIL: RDMA_VM_MEMORY_MB must be a number of MiB" >&2; exit 2; }

say() { echo "rdma-vm: $*" >&2; }
die() { local status=$1; shift; echo "rdma-vm: FAIL: $*" >&2; exit "$status"; }

# The parameterized suite's tests are named Backends/Conformance.<Test>/<backend>.
command=(build/Release/mu-fabric-tests --gtest_filter='*Conformance*')
default_command=1
if (($# > 0)); then
  [[ "$1" == "--" ]] || die 2 "unknown argument '$1' (usage: run-verbs-suite.sh [-- COMMAND ARG...])"
  shift
  (($# > 0)) || die 2 "no command after --"
  command=("$@")
  default_command=0
elif [[ ! -x "$repo/${command[0]}" ]]; then
  die 2 "${command[0]} is not built (run: npm run build:native)"
fi

command -v qemu-system-x86_64 >/dev/null || die 2 "qemu-system-x86_64 is missing (install qemu-system-x86)"

started=$(date +%s.%N)
image=$("$here/prepare-image.sh" "$cache") || die 2 "could not prepare the VM image (see above)"
kernel=$(sed -n 's/^kernel=//p' <<<"$image")
initrd=$(sed -n 's/^initrd=//p' <<<"$image")

# The result share: the command script goes in, markers and the exit status come out.
share="$cache/share"
rm -rf "$share"
mkdir -p "$share"
printf '%s' "$repo" > "$share/repo-path"
{
  echo '#!/bin/bash'
  echo "cd $(printf '%q' "$repo") || exit 125"
  echo 'export HOME=/tmp MU_FABRIC_BACKENDS=verbs MU_VERBS_DEVICE=rxe0 MU_VERBS_GID_INDEX=1 GTEST_COLOR=no'
  while IFS= read -r name; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done < <(compgen -e | grep '^GTEST_' || true)
  printf 'exec'
  printf ' %q' "${command[@]}"
  printf '\n'
} > "$share/command.sh"

log="$cache/console.log"
say "booting $(basename "$kernel") under QEMU TCG (limit ${timeout_s} s); guest command:$(printf ' %q' "${command[@]}")"
set +e
# -nic none: rxe runs on a dummy device inside the guest; the host network is not needed.
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -cpu max -smp 2 -m "${memory_mb}M" \
  -nographic -no-reboot -nic none \
  -kernel "$kernel" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 loglevel=4" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$share,mount_tag=results,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e
wall_s=$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }')

if [[ ! -f "$share/booted" ]]; then
  die 3 "the VM did not boot (qemu status $qemu_status, ${wall_s} s); console log: $log"
fi
if [[ ! -f "$share/rxe-ready" ]]; then
  die 4 "no rxe0 device appeared in the guest (${wall_s} s); console log: $log"
fi
if [[ ! -f "$share/exit-code" ]]; then
  if ((qemu_status == 124 || qemu_status == 137)); then
    die 5 "the guest command did not finish within ${timeout_s} s (set RDMA_VM_TIMEOUT_S); console log: $log"
  fi
  die 5 "the guest command left no exit status: the guest crashed (qemu status $qemu_status, ${wall_s} s); console log: $log"
fi
guest_status=$(cat "$share/exit-code")
[[ "$guest_status" =~ ^[0-9]+$ ]] || die 5 "unreadable exit status '$guest_status' from the guest"
if ((guest_status != 0)); then
  echo "rdma-vm: FAIL: the guest command exited with status $guest_status (${wall_s} s)" >&2
  exit "$guest_status"
fi
# A filter that selects nothing makes GoogleTest pass with zero tests: not a pass here.
if ((default_command)) && ! grep -Eq '^\[==========\] Running [1-9][0-9]* tests?' "$log"; then
  die 5 "the suite ran no tests (filter '${command[1]#--gtest_filter=}' selected none?)"
fi
say "PASS: the guest command succeeded (${wall_s} s)"
