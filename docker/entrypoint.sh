#!/usr/bin/env bash
# One Mu Proxy replica: its local backend(s) and `mu-proxy start`, supervised together.
#
# The container runs this as its entrypoint; scripts/rdma-vm/multi-host-test.sh runs the
# same file for each replica of its three-host cluster, so what the image does is tested.
#
# Environment:
#   MU_REPLICA_ID          required: this replica's id in the cluster configuration
#   MU_CONFIG              the cluster configuration (default /etc/mu-proxy/cluster.json)
#   MU_CLUSTER_SECRET      the control plane's secret, when the file names neither
#                          secret nor secretFile (an environment file, say)
#   MU_DATA_DIR            working directory of the backends (default /var/lib/mu-proxy)
#   MU_START_BACKENDS      1 (default): start redis-server and/or memcached at the
#                          replica's redisBackend/memcachedBackend; 0: they run elsewhere
#   MU_MEMCACHED_MEMORY_MB memcached's memory (-m, default 1024); it runs with -M, so a
#                          full memcached refuses writes instead of evicting (eviction is
#                          local to one server and would make the replicas differ)
#   MU_REDIS_ARGS          more redis-server arguments (word-split), e.g. "--maxmemory 8gb"
#   MU_BACKEND_WAIT_S      how long a backend may take to answer (default 30)
#   MU_PROXY_BIN           the mu-proxy command (default: mu-proxy on PATH)
#
# Exit status: the proxy's, or 1 when a backend died first, 2 for a setup problem. Any
# exit takes the whole replica down (the proxy, then the backends): the restart policy
# brings it back as a fresh replica with an empty backend, which the cluster refills
# (state transfer or log replay). A replica's backend holds replicated state only, so it
# keeps nothing across restarts (no RDB, no AOF).
set -euo pipefail

id=${MU_REPLICA_ID:-}
config=${MU_CONFIG:-/etc/mu-proxy/cluster.json}
data_dir=${MU_DATA_DIR:-/var/lib/mu-proxy}
start_backends=${MU_START_BACKENDS:-1}
memcached_memory_mb=${MU_MEMCACHED_MEMORY_MB:-1024}
backend_wait_s=${MU_BACKEND_WAIT_S:-30}
mu_proxy=${MU_PROXY_BIN:-mu-proxy}

children=() # in start order: the backends, then the proxy
say() { echo "mu-entrypoint ${id:-?}: $*" >&2; }
# The proxy first (it stops proposing and closes its clients), then the backends.
stop_replica() {
  local index pid
  for ((index = ${#children[@]} - 1; index >= 0; index--)); do
    pid=${children[index]}
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
die() {
  say "FAIL: $*"
  stop_replica
  exit 2
}

[[ "$id" =~ ^[0-9]+$ ]] || die "MU_REPLICA_ID must be this replica's id (0, 1, 2, ...), got '${id}'"
[[ -f "$config" && -r "$config" ]] || die "cannot read the cluster configuration $config as a file (mount it, or set MU_CONFIG; a mount of a missing host file shows up as a directory)"
command -v node >/dev/null || die "node is not on PATH"
command -v "$mu_proxy" >/dev/null || die "$mu_proxy is not on PATH (set MU_PROXY_BIN)"

# What this script needs from the configuration. `mu-proxy start` validates the whole
# file itself (and names every problem); here only the fields that decide what to start.
settings=$(node -e '
  const fs = require("node:fs");
  const [file, idText] = process.argv.slice(1);
  let doc;
  try { doc = JSON.parse(fs.readFileSync(file, "utf8")); }
  catch (error) { console.error(`${file}: ${error.message}`); process.exit(2); }
  const replica = (Array.isArray(doc.replicas) ? doc.replicas : []).find((entry) => entry && entry.id === Number(idText));
  if (replica === undefined) { console.error(`${file} has no replica with id ${idText}`); process.exit(2); }
  const fabric = doc.fabric ?? {};
  const engine = doc.engine ?? {};
  const fields = {
    fabric: fabric.backend ?? "shm",
    device: fabric.device ?? "",
    port: fabric.port ?? 1,
    gid_index: fabric.gidIndex ?? 1,
    log_bytes: engine.logBytes ?? 67108864,
    redis_backend: replica.redisBackend ?? "",
    memcached_backend: replica.memcachedBackend ?? "",
  };
  for (const [key, value] of Object.entries(fields)) console.log(`${key}=${value}`);
' "$config" "$id") || die "cannot read replica $id from $config (see above)"
setting() { sed -n "s/^$1=//p" <<<"$settings"; }
fabric=$(setting fabric)
device=$(setting device)
device_port=$(setting port)
gid_index=$(setting gid_index)
log_bytes=$(setting log_bytes)
redis_backend=$(setting redis_backend)
memcached_backend=$(setting memcached_backend)

# host:port or [v6]:port -> "host port"
split_address() {
  local address=$1 host port
  host=${address%:*}
  port=${address##*:}
  host=${host#[}
  host=${host%]}
  echo "$host $port"
}

# The verbs fabric needs the device node, the named device with an active port and a
# non-zero GID at the configured index, and permission to pin the log (ibv_reg_mr).
# Checked here because the engine's own error, from inside ibv_open_device or
# ibv_reg_mr, says less about which container setting is missing.
check_verbs() {
  local sys=/sys/class/infiniband/$device
  [[ -d /dev/infiniband ]] || die "fabric.backend is verbs but /dev/infiniband is missing: pass the device through (compose: devices: [/dev/infiniband]; docker run --device /dev/infiniband)"
  [[ -d "$sys" ]] || die "no RDMA device '$device' (fabric.device); this host has: $(ls /sys/class/infiniband 2>/dev/null | tr '\n' ' ')"
  local state gid gid_type
  state=$(cat "$sys/ports/$device_port/state" 2>/dev/null || echo missing)
  [[ "$state" == *ACTIVE* ]] || die "$device port $device_port is $state, not ACTIVE (link down? for Soft-RoCE: rdma link show)"
  gid=$(cat "$sys/ports/$device_port/gids/$gid_index" 2>/dev/null || echo missing)
  [[ "$gid" != missing && "$gid" != "0000:0000:0000:0000:0000:0000:0000:0000" ]] ||
    die "$device port $device_port has no GID at index $gid_index (fabric.gidIndex); list the port's GIDs as docker/README.md shows ("The GID index")"
  gid_type=$(cat "$sys/ports/$device_port/gid_attrs/types/$gid_index" 2>/dev/null || echo unknown)
  say "verbs: $device port $device_port, GID[$gid_index] $gid ($gid_type)"
  local memlock_kib capabilities
  memlock_kib=$(ulimit -l)
  capabilities=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
  # CAP_IPC_LOCK (bit 14) lifts the memlock limit for ibv_reg_mr; otherwise the limit
  # must hold the log plus the engine's small regions (a page or two each).
  if [[ "$memlock_kib" != unlimited ]] && (((16#$capabilities >> 14 & 1) == 0)) &&
    ((memlock_kib * 1024 < log_bytes + 1048576)); then
    die "the memlock limit (${memlock_kib} KiB) cannot pin the ${log_bytes}-byte log: run with ulimits memlock -1 (docker run --ulimit memlock=-1) and cap_add IPC_LOCK"
  fi
}
[[ "$fabric" == verbs ]] && check_verbs

on_signal() {
  say "stopping (signal)"
  stop_replica
  exit 0
}
trap on_signal TERM INT

wait_until() {
  local what=$1 deadline=$((SECONDS + backend_wait_s))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not answer within ${backend_wait_s} s"
    sleep 0.2
  done
}

# A backend address is host:port or an absolute Unix socket path (the faster way in for a
# backend in the same container, and one nothing on the network can reach).
is_socket_path() { [[ "$1" == /* ]]; }

memcached_answers() {
  local address=$1 host port reply
  if is_socket_path "$address"; then
    node -e '
      const socket = require("node:net").connect(process.argv[1], () => socket.write("version\r\n"));
      socket.setTimeout(2000, () => process.exit(1));
      socket.on("error", () => process.exit(1));
      socket.on("data", (reply) => process.exit(reply.toString().startsWith("VERSION") ? 0 : 1));
    ' "$address"
    return
  fi
  read -r host port <<<"$(split_address "$address")"
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'version\r\n' >&3
  read -r -t 2 reply <&3 || reply=
  exec 3>&-
  [[ "$reply" == VERSION* ]]
}

if [[ "$start_backends" == 1 ]]; then
  mkdir -p "$data_dir"
  if [[ -n "$redis_backend" ]]; then
    if is_socket_path "$redis_backend"; then
      # Only this container's processes (the same user) may connect: 700.
      mkdir -p "$(dirname "$redis_backend")"
      listen=(--port 0 --unixsocket "$redis_backend" --unixsocketperm 700)
      reach=(-s "$redis_backend")
    else
      read -r host port <<<"$(split_address "$redis_backend")"
      listen=(--bind "$host" --port "$port")
      reach=(-h "$host" -p "$port")
    fi
    mkdir -p "$data_dir/redis-$id"
    # No persistence: a restarted replica must come back empty (the proxy refuses a
    # non-empty backend). noeviction: the proxy checks it. DEBUG from local connections:
    # `mu-proxy check` compares the replicas with DEBUG DIGEST.
    # shellcheck disable=SC2086 # MU_REDIS_ARGS is a list of words on purpose
    redis-server "${listen[@]}" --save '' --appendonly no \
      --maxmemory-policy noeviction --protected-mode yes --daemonize no \
      --enable-debug-command local --dir "$data_dir/redis-$id" --logfile '' \
      ${MU_REDIS_ARGS:-} &
    children+=($!)
    wait_until "redis-server at $redis_backend" redis-cli "${reach[@]}" ping
    say "redis-server up at $redis_backend (pid ${children[-1]})"
  fi
  if [[ -n "$memcached_backend" ]]; then
    if is_socket_path "$memcached_backend"; then
      mkdir -p "$(dirname "$memcached_backend")"
      listen=(-s "$memcached_backend" -a 0700)
    else
      read -r host port <<<"$(split_address "$memcached_backend")"
      listen=(-l "$host" -p "$port")
    fi
    user=()
    if ((EUID == 0)); then
      # memcached will not run as root unless told which user to be. It drops to that
      # user before it creates a Unix socket, so on a socket it stays root (as the
      # container's redis-server does): the socket's directory is root's.
      if id memcache >/dev/null 2>&1 && ! is_socket_path "$memcached_backend"; then user=(-u memcache); else user=(-u root); fi
    fi
    memcached "${listen[@]}" -U 0 -m "$memcached_memory_mb" -M "${user[@]}" &
    children+=($!)
    wait_until "memcached at $memcached_backend" memcached_answers "$memcached_backend"
    say "memcached up at $memcached_backend (pid ${children[-1]})"
  fi
fi

say "starting mu-proxy (config $config, fabric $fabric${device:+ $device})"
"$mu_proxy" start --config "$config" --id "$id" &
proxy_pid=$!
children+=("$proxy_pid")

# Whichever child ends first ends the replica.
set +e
wait -n -p ended "${children[@]}"
status=$?
set -e
if [[ "${ended:-}" == "$proxy_pid" ]]; then
  say "mu-proxy exited with status $status: stopping the backends"
else
  say "a backend (pid ${ended:-?}) exited with status $status: stopping the replica"
  status=1
fi
stop_replica
exit "$status"
