#!/usr/bin/env bash
# A local Redis Cluster of 3 masters and 3 replicas from Debian's redis-server, for tests and
# for running seatgate in cluster mode (SEATGATE_REDIS_CLUSTER_NODES, docs/DESIGN.md §9).
#   scripts/redis-cluster.sh up   [DIR]   start it (DIR defaults to target/redis-cluster)
#   scripts/redis-cluster.sh down [DIR]   stop exactly what `up` started, remove DIR
# `up` picks free ports (never 6379, the shared Redis), gives every node its own directory
# under DIR (no persistence: --save "" --appendonly no), bound to 127.0.0.1, creates the
# cluster, waits until every node reports cluster_state:ok, and prints the nodes, one
# redis://127.0.0.1:PORT per line, masters first, then a line SEATGATE_REDIS_CLUSTER_NODES=...
# (`eval "$(scripts/redis-cluster.sh up | grep ^SEATGATE_)"` exports it). Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-}"
dir="${2:-target/redis-cluster}"
nodes=6

usage() {
  echo "usage: $0 up|down [DIR]" >&2
  exit 2
}

# True when nothing listens on 127.0.0.1:$1 (bash's /dev/tcp: no extra tool needed).
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stops every node whose pid file is in $dir, waits for them to exit, removes $dir.
down() {
  [ -d "$dir" ] || return 0
  local pidfile pid
  for pidfile in "$dir"/node-*/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    # Only a redis-server we started: the pid file is ours and the process is redis-server.
    if [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "redis-server" ]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pidfile in "$dir"/node-*/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    for _ in $(seq 1 50); do
      [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "redis-server" ] || break
      sleep 0.1
    done
  done
  rm -rf "$dir"
}

up() {
  command -v redis-server >/dev/null || { echo "error: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
  if [ -d "$dir" ] && ls "$dir"/node-*/redis.pid >/dev/null 2>&1; then
    echo "error: $dir already holds a cluster; run '$0 down $dir' first" >&2
    exit 1
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  # Free ports from a range that leaves 6379 and its neighbours alone; a port is taken when
  # both it and its cluster bus port (port + 10000) are free.
  local ports=() port=$((20000 + RANDOM % 20000))
  while [ "${#ports[@]}" -lt "$nodes" ]; do
    port=$((port + 1))
    [ "$port" -ge 45000 ] && port=20000
    if port_free "$port" && port_free $((port + 10000)); then ports+=("$port"); fi
  done
  trap 'echo "error: the cluster did not come up; logs in $dir/node-*/redis.log" >&2; down' ERR
  local p
  for p in "${ports[@]}"; do
    mkdir -p "$dir/node-$p"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/node-$p" \
      --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --daemonize yes --pidfile "$dir/node-$p/redis.pid" --logfile "$dir/node-$p/redis.log" >/dev/null
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -p "$p" ping >/dev/null
  done
  local addresses=()
  for p in "${ports[@]}"; do addresses+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
    { cat "$dir/create.log" >&2; false; }
  local ok
  for _ in $(seq 1 200); do
    ok=0
    for p in "${ports[@]}"; do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" -eq "$nodes" ] && break
    sleep 0.1
  done
  [ "$ok" -eq "$nodes" ] || { echo "error: cluster_state is not ok on every node" >&2; false; }
  trap - ERR
  # Masters first (by role), then replicas.
  local masters=() replicas=()
  for p in "${ports[@]}"; do
    if redis-cli -p "$p" role | head -1 | grep -q '^master$'; then masters+=("$p"); else replicas+=("$p"); fi
  done
  local list=()
  for p in "${masters[@]}" "${replicas[@]}"; do
    echo "redis://127.0.0.1:$p"
    list+=("redis://127.0.0.1:$p")
  done
  (IFS=,; echo "SEATGATE_REDIS_CLUSTER_NODES=${list[*]}")
  echo "redis cluster up in $dir: ${#masters[@]} masters, ${#replicas[@]} replicas" >&2
}

case "$action" in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
