#!/usr/bin/env bash
# seatgate-lb vs nginx as the same round-robin keep-alive proxy in front of the same two
# upstreams, measured with wrk in alternating rounds. Everything runs on 127.0.0.1, every run is
# bounded by wrk's duration, and everything this script starts is stopped on exit (trap).
#
#   scripts/bench-lb.sh                      # 3 rounds x 10 s each, wrk -t2 -c64, 2 workers each
#   ROUNDS=5 DURATION=15s WORKERS=1 scripts/bench-lb.sh
#
# Knobs (env): ROUNDS (3), DURATION (10s), THREADS (wrk threads, 2), CONNS (64),
# WORKERS (nginx worker_processes = seatgate-lb tokio worker threads, 2),
# BENCH_PATH (/health/live, answered by both upstreams with a small JSON body),
# UPSTREAM (tiny: two small echo servers; seatgate: two real seatgate API instances on a demo
# database, with BENCH_PATH defaulting to the seat map of a demo showtime:
#   UPSTREAM=seatgate scripts/bench-lb.sh).
# Output: per-round req/s and p99 for both, then medians and the ratio lb/nginx.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-2}
UPSTREAM=${UPSTREAM:-tiny}
BENCH_PATH=${BENCH_PATH:-}

cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${need[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building seatgate-lb and the bench upstream (release)" >&2
cargo build --release --quiet -p seatgate-lb --bin seatgate-lb --example upstream
if [ "$UPSTREAM" = seatgate ]; then
  cargo build --release --quiet -p seatgate --bin seatgate
  scripts/ensure-services.sh >/dev/null
fi
LB_BIN=target/release/seatgate-lb
UP_BIN=target/release/examples/upstream

TMP=$(mktemp -d -t seatgate-lb-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url: poll until it answers 200, at most 10 s
  local deadline=$((SECONDS + 10))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "no answer from $1" >&2; exit 1; }
    sleep 0.05
  done
}

U1=$(free_port); U2=$(free_port); LB=$(free_port); LB_ADMIN=$(free_port); NG=$(free_port)

if [ "$UPSTREAM" = seatgate ]; then
  export SEATGATE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/seatgate_lbbench"
  export SEATGATE_REDIS_KEY_PREFIX=sglbbench SEATGATE_AMQP_NAMESPACE=lbbench SEATGATE_AMQP_QUEUE_EXPIRES_MS=600000
  export SEATGATE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" RUST_LOG=warn RUST_BACKTRACE=0
  export SEATGATE_HTTP_WORKERS="$WORKERS"
  target/release/seatgate seed-demo >"$TMP/seed.log" 2>&1
  SEATGATE_LISTEN="127.0.0.1:$U1" target/release/seatgate serve 2>"$TMP/up-a.log" & PIDS+=($!)
  SEATGATE_LISTEN="127.0.0.1:$U2" target/release/seatgate serve 2>"$TMP/up-b.log" & PIDS+=($!)
  wait_http "http://127.0.0.1:$U1/health/ready"
  wait_http "http://127.0.0.1:$U2/health/ready"
  SHOW=$(curl -fsS "http://127.0.0.1:$U1/api/v1/showtimes?per_page=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
  BENCH_PATH=${BENCH_PATH:-/api/v1/showtimes/$SHOW/seats}
else
  BENCH_PATH=${BENCH_PATH:-/health/live}
  "$UP_BIN" "127.0.0.1:$U1" a 2>"$TMP/up-a.log" & PIDS+=($!)
  "$UP_BIN" "127.0.0.1:$U2" b 2>"$TMP/up-b.log" & PIDS+=($!)
  wait_http "http://127.0.0.1:$U1/health/ready"
  wait_http "http://127.0.0.1:$U2/health/ready"
fi

SEATGATE_LB_LISTEN="127.0.0.1:$LB" \
SEATGATE_LB_ADMIN_LISTEN="127.0.0.1:$LB_ADMIN" \
SEATGATE_LB_UPSTREAMS="http://127.0.0.1:$U1,http://127.0.0.1:$U2" \
SEATGATE_LB_STRATEGY=round_robin \
SEATGATE_LB_WORKER_THREADS="$WORKERS" \
RUST_LOG=warn \
  "$LB_BIN" 2>"$TMP/lb.log" & LB_PID=$!; PIDS+=("$LB_PID")

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
# The same job as seatgate-lb: round-robin over the same upstreams, HTTP/1.1 keep-alive to
# them, the same forwarding headers, no access log (the lb writes none either).
daemon off;
master_process on;
worker_processes $WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  upstream seatgate_api {
    server 127.0.0.1:$U1;
    server 127.0.0.1:$U2;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$NG reuseport;
    keepalive_requests 1000000;
    client_max_body_size 1m;
    location / {
      proxy_pass http://seatgate_api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
      proxy_next_upstream error;
    }
  }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr.log" & NGINX_PID=$!; PIDS+=("$NGINX_PID")

wait_http "http://127.0.0.1:$LB$BENCH_PATH"
wait_http "http://127.0.0.1:$NG$BENCH_PATH"

# Warm both (connections to upstreams, caches) before measuring.
wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$LB$BENCH_PATH" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$NG$BENCH_PATH" >/dev/null

to_ms() { # wrk latency ("812.00us", "1.53ms", "1.02s") -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else { printf "nan" } }'
}

cpu_ticks() { # pids -> user+system clock ticks over all their threads
  local total=0 pid task fields
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*/stat; do
      read -r -a fields < <(sed 's/^.*) //' "$task" 2>/dev/null) || continue
      total=$((total + fields[11] + fields[12]))
    done
  done
  echo "$total"
}

proxy_pids() { # name -> pids of that proxy (nginx: master and workers)
  if [ "$1" = nginx ]; then echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; else echo "$LB_PID"; fi
}

run_wrk() { # name port -> appends "rps p99ms cpu_us_per_request" to $TMP/<name>.txt
  local out pids t0 t1 requests cpu_us
  # shellcheck disable=SC2207
  pids=($(proxy_pids "$1"))
  t0=$(cpu_ticks "${pids[@]}")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$2$BENCH_PATH")
  t1=$(cpu_ticks "${pids[@]}")
  if grep -q -E "Non-2xx|Socket errors" <<<"$out"; then
    echo "$1: errors during the run:" >&2
    grep -E "Non-2xx|Socket errors" <<<"$out" >&2
  fi
  local rps p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  echo "$rps $p99 $cpu_us" >>"$TMP/$1.txt"
  printf "  %-12s %10.0f req/s   p99 %7.2f ms   proxy CPU %5.1f us/req\n" "$1" "$rps" "$p99" "$cpu_us"
}

echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, path $BENCH_PATH, $WORKERS worker(s) each, $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) -eq 1 ]; then
    run_wrk seatgate-lb "$LB"; run_wrk nginx "$NG"
  else
    run_wrk nginx "$NG"; run_wrk seatgate-lb "$LB"
  fi
done

median() { # column file
  sort -g -k"$1","$1" "$2" | awk -v c="$1" '{ v[NR] = $c } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
LB_RPS=$(median 1 "$TMP/seatgate-lb.txt"); LB_P99=$(median 2 "$TMP/seatgate-lb.txt"); LB_CPU=$(median 3 "$TMP/seatgate-lb.txt")
NG_RPS=$(median 1 "$TMP/nginx.txt"); NG_P99=$(median 2 "$TMP/nginx.txt"); NG_CPU=$(median 3 "$TMP/nginx.txt")

echo
echo "median of $ROUNDS rounds (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
printf "  %-12s %10.0f req/s   p99 %7.2f ms   proxy CPU %5.1f us/req\n" seatgate-lb "$LB_RPS" "$LB_P99" "$LB_CPU"
printf "  %-12s %10.0f req/s   p99 %7.2f ms   proxy CPU %5.1f us/req\n" nginx "$NG_RPS" "$NG_P99" "$NG_CPU"
awk -v a="$LB_RPS" -v b="$NG_RPS" -v c="$LB_P99" -v d="$NG_P99" -v e="$LB_CPU" -v f="$NG_CPU" \
  'BEGIN { printf "  ratio lb/nginx: req/s %.2f (higher is better), p99 %.2f, CPU per request %.2f (lower is better)\n", a / b, c / d, e / f }'
