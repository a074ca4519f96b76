#!/usr/bin/env bash
# Three replicas on three emulated hosts over real verbs (Soft-RoCE), each started by
# docker/entrypoint.sh exactly as the container starts it (redis-server + mu-proxy), with
# a client writing through the proxies while: the leader's host loses its links and later
# gets them back (the links then come back out of step and are reset by both ends); a
# follower is killed (the whole replica) and restarted empty. Passes
# when writes continued after each fault, every acknowledged write reads back, and
# `mu-proxy check` finds every replica's backend equal at one log index.
#
# Runs inside the Soft-RoCE VM only (it rewires the machine's routing):
#   RDMA_VM_MEMORY_MB=2048 RDMA_VM_TIMEOUT_S=600 \
#     bash scripts/rdma-vm/run-verbs-suite.sh -- bash scripts/rdma-vm/multi-host-test.sh
#
# The hosts. Linux 6.1's rxe sends and receives RoCE only in the initial network
# namespace (its UDP socket and route lookups are init_net's), so each host is two parts:
#   - network namespace hN: the host's IP stack (10.20.0.N+1): the replica's processes,
#     its control plane, its Redis port and its redis-server on the namespace's own
#     loopback, as on a real host;
#   - its RoCE port: veth roce-hN in the initial namespace (10.30.0.N+1) carrying rxe_hN,
#     the device in that replica's configuration. (RDMA devices are visible from every
#     namespace, `rdma system` netns shared.)
# Both links of every host plug into one bridge (the switch); the client sits on the
# bridge (10.20.0.100). Losing a host's links = setting its two switch ports down.
# Traffic between two rxe ports in one namespace would be delivered locally without
# touching the wire; policy routing sends each port's packets out of that port instead
# (rules by output interface, the local table moved after them, accept_local on).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=/tmp/multi-host
hosts=(0 1 2)
# Generous: two emulated CPUs (TCG) for three Node proxies, three redis-servers, rxe and
# the client, on a machine that may be running other suites.
start_timeout_s=${MULTI_HOST_START_TIMEOUT_S:-300}
fault_timeout_s=${MULTI_HOST_FAULT_TIMEOUT_S:-150}
progress_writes=30 # acknowledged writes that show the cluster moving again

say() { echo "multi-host [${SECONDS}s]: $*"; }
dump_logs() {
  local host
  for host in "${hosts[@]}"; do
    echo "----- host $host (last lines of $work/h$host.log, redis-server lines left out)"
    grep -v '^[0-9]*:[CMX] ' "$work/h$host.log" 2>/dev/null | tail -n 25 || true
    echo "MU STATUS: $(status_of "$host" | cut -c1-600)"
  done
  echo "----- rxe counters (non-zero; errors and sequence problems)"
  local device counter
  for device in /sys/class/infiniband/rxe_h*; do
    echo "${device##*/}: $(for counter in "$device"/ports/1/hw_counters/*; do
      case "${counter##*/}" in *err* | *seq* | *retr* | *dup* | sent_pkts | rcvd_pkts) ;; *) continue ;; esac
      [[ "$(cat "$counter")" == 0 ]] || printf '%s=%s ' "${counter##*/}" "$(cat "$counter")"
    done)"
  done
  echo "----- client"
  tail -n 15 "$work/client.log" 2>/dev/null || true
}
fail() {
  say "FAIL: $*"
  dump_logs
  exit 1
}

[[ -f /tmp/rdma-vm/booted ]] ||
  fail "runs inside the Soft-RoCE VM only: bash scripts/rdma-vm/run-verbs-suite.sh -- bash scripts/rdma-vm/multi-host-test.sh"
for tool in ip rdma redis-server redis-cli node setsid; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
[[ -f "$repo/build/Release/mu_native.node" ]] || fail "the native addon is not built (npm run build:native)"
rm -rf "$work"
mkdir -p "$work"

tcp_ip() { echo "10.20.0.$(($1 + 1))"; }
roce_ip() { echo "10.30.0.$(($1 + 1))"; }

# --- the hosts and the switch --------------------------------------------------------
setup_network() {
  local key host
  # Packets between the rxe ports come from addresses local to this namespace:
  # accept them, and let only the port that owns an address answer ARP for it.
  for key in all default; do
    echo 1 >"/proc/sys/net/ipv4/conf/$key/accept_local"
    echo 0 >"/proc/sys/net/ipv4/conf/$key/rp_filter"
    echo 1 >"/proc/sys/net/ipv4/conf/$key/arp_ignore"
    echo 2 >"/proc/sys/net/ipv4/conf/$key/arp_announce"
  done
  ip link add switch0 type bridge
  ip link set switch0 up
  ip addr add 10.20.0.100/24 dev switch0
  ip rule add pref 200 lookup local
  ip rule del pref 0 lookup local
  for host in "${hosts[@]}"; do
    ip netns add "h$host"
    ip -n "h$host" link set lo up
    ip link add "tcp-h$host" type veth peer name eth0 netns "h$host"
    ip link set "tcp-h$host" master switch0 up
    ip -n "h$host" addr add "$(tcp_ip "$host")/24" dev eth0
    ip -n "h$host" link set eth0 up
    ip link add "roce-h$host" type veth peer name "port-h$host"
    ip link set "port-h$host" master switch0 up
    ip addr add "$(roce_ip "$host")/32" dev "roce-h$host"
    ip link set "roce-h$host" up
    # The port's own address stays local (a replica also connects a queue pair to
    # itself, which rxe loops back); the others are out on the wire.
    ip route add local "$(roce_ip "$host")" dev "roce-h$host" table $((100 + host))
    ip route add 10.30.0.0/24 dev "roce-h$host" src "$(roce_ip "$host")" table $((100 + host))
    ip rule add pref 100 oif "roce-h$host" lookup $((100 + host))
    rdma link add "rxe_h$host" type rxe netdev "roce-h$host"
  done
}

# The index of the RoCE v2 GID that carries `ip` on `device` port 1.
gid_index_of() {
  local device=$1 ip=$2 wanted gid index
  # shellcheck disable=SC2086 # the address's four octets as four arguments
  wanted=$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' ${ip//./ })
  for gid in "/sys/class/infiniband/$device/ports/1/gids/"*; do
    index=${gid##*/}
    [[ "$(cat "$gid" 2>/dev/null)" == "$wanted" ]] || continue
    [[ "$(cat "/sys/class/infiniband/$device/ports/1/gid_attrs/types/$index" 2>/dev/null)" == "RoCE v2" ]] || continue
    echo "$index"
    return 0
  done
  return 1
}

# Every host's configuration is the same cluster; only its own RDMA device differs (the
# fabric section is local to a replica).
write_configs() {
  local host gid_index replicas=""
  for host in "${hosts[@]}"; do
    replicas+="${replicas:+,}
    { \"id\": $host, \"control\": \"$(tcp_ip "$host"):7400\", \"redis\": \"0.0.0.0:6380\", \"redisBackend\": \"127.0.0.1:6379\", \"metrics\": \"0.0.0.0:9121\" }"
  done
  head -c 24 /dev/urandom | base64 >"$work/secret"
  chmod 600 "$work/secret"
  for host in "${hosts[@]}"; do
    gid_index=""
    for _ in $(seq 50); do
      gid_index=$(gid_index_of "rxe_h$host" "$(roce_ip "$host")") && break
      sleep 0.2
    done
    [[ -n "$gid_index" ]] || fail "rxe_h$host has no RoCE v2 GID for $(roce_ip "$host")"
    # A 200 ms detection window, as the other verbs tests in this VM use: emulation is
    # ~100x slower than a real host.
    cat >"$work/cluster-h$host.json" <<EOF
{
  "cluster": "multi-host",
  "secretFile": "$work/secret",
  "fabric": { "backend": "verbs", "device": "rxe_h$host", "port": 1, "gidIndex": $gid_index },
  "engine": { "logBytes": 8388608, "maxEntryBytes": 65536, "failureDetector": { "readIntervalUs": 20000, "failureReads": 10 } },
  "redis": { "readMode": "linearizable", "followerRequests": "forward" },
  "replicas": [$replicas
  ]
}
EOF
  done
}

# --- the replicas, through the container's entrypoint --------------------------------
declare -A replica_pid
declare -A replica_up # hosts whose replica must be running
start_replica() {
  local host=$1
  echo "===== start $(date +%T)" >>"$work/h$host.log"
  # Its own session, so that killing the replica kills the entrypoint, redis-server and
  # mu-proxy together, as stopping a container does. The loop is the compose file's
  # `restart: unless-stopped`: a replica that exits (one whose RDMA links stayed wedged
  # after a partition restarts itself, mu/member.ts) is started again.
  setsid ip netns exec "h$host" env MU_REPLICA_ID="$host" MU_CONFIG="$work/cluster-h$host.json" \
    MU_DATA_DIR="$work/data-h$host" MU_PROXY_BIN="$repo/bin/mu-proxy" MU_BACKEND_WAIT_S=120 \
    bash -c 'while :; do bash "$0"; echo "===== exited with status $? at $(date +%T); restarting"; sleep 1; done' \
    "$repo/docker/entrypoint.sh" >>"$work/h$host.log" 2>&1 </dev/null &
  replica_pid[$host]=$!
  replica_up[$host]=1
}
kill_replica() {
  local host=$1
  unset "replica_up[$host]"
  kill -KILL -- "-${replica_pid[$host]}" 2>/dev/null || true
  wait "${replica_pid[$host]}" 2>/dev/null || true
}
stop_all() {
  local host
  for host in "${!replica_pid[@]}"; do kill -TERM "${replica_pid[$host]}" 2>/dev/null || true; done
  for host in "${!replica_pid[@]}"; do
    for _ in $(seq 30); do kill -0 "${replica_pid[$host]}" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-${replica_pid[$host]}" 2>/dev/null || true
  done
  [[ -n "${client_pid:-}" ]] && kill "$client_pid" 2>/dev/null
  return 0
}
trap stop_all EXIT

# MU STATUS of a host's replica (one JSON line), empty when it does not answer.
status_of() { timeout 10 redis-cli -h "$(tcp_ip "$1")" -p 6380 MU STATUS 2>/dev/null || true; }
field() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -n 1 | cut -d: -f2 | tr -d '"'; }
# The first of the given hosts whose replica says it leads.
leader_among() {
  local host status
  for host in "$@"; do
    status=$(status_of "$host")
    if [[ "$(field role "$status")" == leader ]]; then
      echo "$host"
      return 0
    fi
  done
  return 1
}
has_leader_among() { leader_among "$@" >/dev/null; }
# Settled around `host`: every replica answers and names the same leader, which says it
# leads; `host` sees every peer alive and applies to a healthy backend. (Who leads
# afterwards is the cluster's business: a returning replica may take the lead back.)
settled_around() {
  local host=$1 each status named agreed=""
  for each in "${hosts[@]}"; do
    status=$(status_of "$each")
    named=$(field leader "$status")
    [[ "$named" =~ ^[0-9]+$ && ( -z "$agreed" || "$agreed" == "$named" ) ]] || return 1
    agreed=$named
    if [[ "$each" == "$host" ]]; then
      [[ "$(field backendFailed "$status")" == null ]] || return 1
      grep -q '"peerAlive":\[true,true,true\]' <<<"$status" || return 1
    fi
  done
  [[ "$(field role "$(status_of "$agreed")")" == leader ]]
}
acknowledged() { if [[ -f "$work/acked" ]]; then wc -l <"$work/acked"; else echo 0; fi; }
# wait_for <what> <timeout s> <command...>: until the command succeeds.
wait_for() {
  local what=$1 timeout_s=$2 deadline host
  shift 2
  deadline=$((SECONDS + timeout_s))
  until "$@"; do
    ((SECONDS < deadline)) || fail "$what: not within ${timeout_s} s"
    [[ -z "${client_pid:-}" ]] || kill -0 "$client_pid" 2>/dev/null || fail "the client exited early"
    for host in "${!replica_up[@]}"; do
      kill -0 "${replica_pid[$host]}" 2>/dev/null || fail "replica $host exited (while waiting for: $what)"
    done
    sleep 1
  done
}
acknowledged_at_least() { (($(acknowledged) >= $1)); }

# --- the test ---------------------------------------------------------------------------
say "wiring three hosts (namespaces h0 h1 h2, RoCE ports rxe_h0 rxe_h1 rxe_h2, one switch)"
setup_network
write_configs
for host in "${hosts[@]}"; do start_replica "$host"; done
say "replicas starting through docker/entrypoint.sh"
wait_for "a leader among the three" "$start_timeout_s" has_leader_among "${hosts[@]}"
leader=$(leader_among "${hosts[@]}")
say "replica $leader leads"

targets=$(printf '%s:6380,' "$(tcp_ip 0)" "$(tcp_ip 1)" "$(tcp_ip 2)")
node "$here/multi-host-client.mjs" write --targets "${targets%,}" --acked "$work/acked" --stop "$work/stop" >"$work/client.log" 2>&1 &
client_pid=$!
wait_for "$progress_writes writes through the proxies" "$fault_timeout_s" acknowledged_at_least "$progress_writes"
say "$(acknowledged) writes acknowledged through the proxies"

# A follower dies (the whole replica, as when its container is killed) and comes back
# empty: the cluster refills its redis-server.
victim=$(((leader + 1) % 3))
say "killing replica $victim (entrypoint, redis-server and mu-proxy: SIGKILL)"
kill_replica "$victim"
before=$(acknowledged)
wait_for "writes with replica $victim down" "$fault_timeout_s" acknowledged_at_least $((before + progress_writes))
say "writes continue without replica $victim ($(acknowledged) acknowledged); restarting it empty"
start_replica "$victim"
leader_applied=$(field appliedIndex "$(status_of "$leader")")
caught_up() {
  settled_around "$victim" &&
    (($(field backendAppliedIndex "$(status_of "$victim")" | grep -E '^[0-9]+$' || echo 0) >= ${leader_applied:-1}))
}
wait_for "replica $victim back in step (applied index >= ${leader_applied:-?})" "$start_timeout_s" caught_up
before=$(acknowledged)
wait_for "writes with replica $victim back" "$fault_timeout_s" acknowledged_at_least $((before + progress_writes))
leader=$(leader_among "${hosts[@]}") || fail "no leader after replica $victim came back"
say "replica $victim is back in step ($(acknowledged) acknowledged); replica $leader leads"

# The leader's host loses its links (both switch ports down, as when its cables are
# pulled): the other two elect a leader and writes continue.
old_leader=$leader
others=()
for host in "${hosts[@]}"; do [[ "$host" == "$old_leader" ]] || others+=("$host"); done
say "the leader's host (h$old_leader) loses its links"
before=$(acknowledged)
ip link set "tcp-h$old_leader" down
ip link set "port-h$old_leader" down
cut_at=$SECONDS
wait_for "a new leader among ${others[*]}" "$fault_timeout_s" has_leader_among "${others[@]}"
leader=$(leader_among "${others[@]}")
say "replica $leader leads, $((SECONDS - cut_at)) s after the cut (polled once a second)"
wait_for "writes after the failover" "$fault_timeout_s" acknowledged_at_least $((before + progress_writes))
say "writes continue ($(acknowledged) acknowledged, $((SECONDS - cut_at)) s after the cut)"
# Nothing acknowledged before or during the failover is lost (read through the two
# replicas that can be reached).
node "$here/multi-host-client.mjs" verify --targets "$(tcp_ip "${others[0]}"):6380,$(tcp_ip "${others[1]}"):6380" \
  --acked "$work/acked" || fail "acknowledged writes were lost in the failover"

# The links come back: the old leader must find out it was deposed and take part again.
# Its queue pairs failed during the outage while its peers kept theirs, so the RDMA links
# come back out of step; each end that goes on not reaching a peer whose control plane
# answers resets the link together with it (engine.linkResetMs, mu/link_resets.ts), in
# place. The process restart (engine.wedgedLinkRestartMs) is only the last resort, and
# must not have been needed.
ip link set "tcp-h$old_leader" up
ip link set "port-h$old_leader" up
say "h$old_leader's links are back"
rejoined() { settled_around "$old_leader"; }
wait_for "replica $old_leader back in the cluster after its links came back" "$fault_timeout_s" rejoined
if grep -q 'its RDMA links are wedged' "$work/h$old_leader.log"; then
  fail "replica $old_leader had to restart itself to rejoin: the paired reset of its links did not bring them back"
fi
resets=$(cat "$work"/h*.log | grep -c 'resetting the link (reset' || true)
say "replica $old_leader rejoined without a restart ($resets paired link reset(s) started, all hosts)"
before=$(acknowledged)
wait_for "writes with all three back" "$fault_timeout_s" acknowledged_at_least $((before + progress_writes))
say "replica $old_leader is back in the cluster; replica $(leader_among "${hosts[@]}" || echo '?') leads ($(acknowledged) acknowledged)"

touch "$work/stop"
client_status=0
wait "$client_pid" || client_status=$?
client_pid=""
grep '^client summary' "$work/client.log" | cut -c1-300 || true
((client_status == 0)) || fail "the client found a violation (status $client_status)"
node "$here/multi-host-client.mjs" verify --targets "${targets%,}" --acked "$work/acked" ||
  fail "acknowledged writes were lost"
check_output=$("$repo/bin/mu-proxy" check --config "$work/cluster-h0.json" --timeout-ms 60000 2>&1) ||
  fail "mu-proxy check: $check_output"
echo "$check_output"
say "PASS: $(acknowledged) acknowledged writes survived a follower's restart and a leader's link loss; the digests agree"
