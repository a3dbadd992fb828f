#!/usr/bin/env bash
# The fault suite (docs/DESIGN.md §2, issue 6; docs/RELIABILITY.md). Runs a sale through seatgate-lb in
# front of two API instances, with the workers and the sweeper running, and during it injects one
# fault at a time:
#   none       no fault (the baseline the other rows compare with)
#   redis      Redis restarted without saving (every hold and cached seat status lost)
#   worker     the worker process killed with SIGKILL mid-batch (restarted 1 s later, as a
#              supervisor would)
#   rabbitmq   RabbitMQ restarted (stop_app / start_app)
#   api        one of the two API instances killed with SIGKILL behind the lb (restarted after
#              the sale)
#   postgres   PostgreSQL restarted (fast shutdown: open connections are cut)
#   gateway    the payment gateway failing transiently 30% of the time (workers restarted with
#              SEATGATE_PAYMENT_FAILURE_RATE=0.3 until the end of the sale)
#   redis-long Redis stopped for REDIS_DOWN_SECS (90) with charges in flight (the workers are
#              restarted with a 2 s gateway 3 s before, so charges are under way): longer than a
#              payment's deadline (hold 15 s + checkout extension 15 s + 60 s grace), so workers
#              charge, cannot claim the seats, retry until their tasks are dead-lettered, and the
#              reservations expire: every charge must end refunded by the reconciler
#   postgres-long PostgreSQL stopped for PG_DOWN_SECS (45): longer than a task's retries
#              (SEATGATE_PAYMENT_MAX_ATTEMPTS=10 at 0.2/1/5 s), so tasks are dead-lettered with
#              charges possibly made just before the stop: every charge booked or refunded
#   redis-failover the run's Redis is a Redis Cluster of its own (scripts/redis-cluster.sh: 3
#              masters, 3 replicas, cluster-node-timeout 2 s, on free ports under the run's
#              directory); the master owning the hot showtime's slot (the one with the most
#              reservations so far) is killed with SIGKILL and stays dead; the cluster promotes
#              its replica by itself (CLUSTER FAILOVER TAKEOVER on the replica only if it has not
#              within FAILOVER_TAKEOVER_SECS, 20). The time to promotion and which way it came
#              are in details.md. It cannot share a run with the rows that stop the one Redis
#              (redis, redis-long): the whole run is on the cluster, and the one Redis on 6379 is
#              not touched.
# Once the sale's reservations are final and the payment queues are empty,
# `seatgate check-invariants` must report 0 violations. Time to recover: from the start of the
# fault until a fresh purchase (hold, checkout, confirmed booking) of a separate probe customer
# succeeds end to end through the lb.
#
# It restarts this machine's Redis, RabbitMQ and PostgreSQL for real: run it alone, not beside
# the test suite.
#   scripts/faults.sh                 all faults (none redis worker rabbitmq api postgres gateway)
#   scripts/faults.sh redis api       some of them
#   SALE_SECS=20 SALE_USERS=40 SALE_SHOWTIMES=6 SALE_THINK_MS=250 SALE_PAY_MS=500 \
#     INJECT_AFTER_SECS=6 scripts/faults.sh
#   FAULTS_KEEP=1 scripts/faults.sh ...   keep the run's database and Redis keys for inspection (the
#                                         names are printed; delete them yourself afterwards)
# Output: the table on stdout (also target/faults/<time>/table.md), what clients saw per fault in
# details.md; per fault the sale's JSON and log and the checker's report; every process's log.
set -euo pipefail
cd "$(dirname "$0")/.."

all_faults=(none redis worker rabbitmq api postgres gateway redis-long postgres-long redis-failover)
faults=("$@")
# Every row but redis-failover by default: that one runs the whole run on a cluster.
[ ${#faults[@]} -eq 0 ] && faults=(none redis worker rabbitmq api postgres gateway redis-long postgres-long)
for f in "${faults[@]}"; do
  case " ${all_faults[*]} " in
    *" $f "*) ;;
    *) echo "error: unknown fault '$f' (known: ${all_faults[*]})" >&2; exit 2 ;;
  esac
done
cluster=""
case " ${faults[*]} " in
  *" redis-failover "*)
    cluster=1
    case " ${faults[*]} " in
      *" redis "* | *" redis-long "*)
        echo "error: redis-failover runs on a Redis Cluster of its own; run redis and redis-long apart" >&2; exit 2 ;;
    esac ;;
esac
sale_secs="${SALE_SECS:-20}"
sale_users="${SALE_USERS:-40}"
sale_showtimes="${SALE_SHOWTIMES:-6}"
sale_think_ms="${SALE_THINK_MS:-250}"
sale_pay_ms="${SALE_PAY_MS:-500}"
inject_after="${INJECT_AFTER_SECS:-6}"

for tool in psql redis-cli redis-server rabbitmqctl pg_ctlcluster curl python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 1; }
done
scripts/ensure-services.sh >/dev/null

echo "building release binaries..."
cargo build --release --locked --workspace --bins >/dev/null
bin=target/release
out="target/faults/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

run="faults$(date +%s)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export SEATGATE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/seatgate_$run"
export SEATGATE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SEATGATE_ADMIN_EMAIL="admin@seatgate.local" SEATGATE_ADMIN_PASSWORD="admin-password"
# A throw-away demo (placeholder admin password); every simulated customer comes from one IP.
export SEATGATE_DEMO=1 SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE=1000000
export SEATGATE_REDIS_KEY_PREFIX="$run" SEATGATE_AMQP_NAMESPACE="$run"
# Production topology (quorum queues): SEATGATE_AMQP_QUEUE_EXPIRES_MS stays unset, so the queues
# outlive the run and cleanup() deletes them by name.
unset SEATGATE_AMQP_QUEUE_EXPIRES_MS
export SEATGATE_HOLD_TTL_SECS=15 SEATGATE_CHECKOUT_EXTENSION_SECS=15 SEATGATE_HOLD_MAX_LIFETIME_SECS=45
export SEATGATE_SWEEP_INTERVAL_SECS=1 SEATGATE_STUCK_PAYMENT_SECS=5
export SEATGATE_PAYMENT_RETRY_BASE_MS=200 SEATGATE_PAYMENT_MAX_ATTEMPTS=10 SEATGATE_PAYMENT_LATENCY_MS=20
export SEATGATE_DATABASE_ACQUIRE_TIMEOUT_MS=1000 SEATGATE_REDIS_TIMEOUT_MS=1000
export SEATGATE_SHUTDOWN_GRACE_MS=600 SEATGATE_LOG_FORMAT=json RUST_LOG=warn,seatgate=info
export SEATGATE_LOGIN_ATTEMPTS_PER_MINUTE=100000 SEATGATE_TOKEN_TTL_SECS=86400
unset SEATGATE_PAYMENT_FAILURE_RATE
api_ports=("$(free_port)" "$(free_port)")
lb_port=$(free_port)
lb_admin=$(free_port)
lb="http://127.0.0.1:$lb_port"
# Names the app declares for this namespace (src/messaging/topology.rs): retry queues are
# payments.retry.<base x 1, 5, 25>ms.
retry_base=$SEATGATE_PAYMENT_RETRY_BASE_MS
queues=(payments notifications payments.dead
  "payments.retry.${retry_base}ms" "payments.retry.$((retry_base * 5))ms" "payments.retry.$((retry_base * 25))ms")
redis_dir=$(redis-cli -p 6379 config get dir 2>/dev/null | sed -n 2p)
redis_dir=${redis_dir:-/tmp}
cluster_dir="$out/redis-cluster"
if [ -n "$cluster" ]; then
  SEATGATE_REDIS_CLUSTER_NODES="$(scripts/redis-cluster.sh up "$cluster_dir" | sed -n 's/^SEATGATE_REDIS_CLUSTER_NODES=//p')"
  export SEATGATE_REDIS_CLUSTER_NODES
fi

declare -A pid
start_api() { SEATGATE_LISTEN="127.0.0.1:${api_ports[$1]}" $bin/seatgate serve >>"$out/api-$1.log" 2>&1 & pid[api$1]=$!; }
start_workers() { $bin/seatgate-workers all >>"$out/workers.log" 2>&1 & pid[workers]=$!; }
start_lb() {
  SEATGATE_LB_LISTEN="127.0.0.1:$lb_port" SEATGATE_LB_ADMIN_LISTEN="127.0.0.1:$lb_admin" \
    SEATGATE_LB_UPSTREAMS="http://127.0.0.1:${api_ports[0]},http://127.0.0.1:${api_ports[1]}" \
    SEATGATE_LB_HEALTH_INTERVAL_MS=500 SEATGATE_LB_STRATEGY=least_conn \
    $bin/seatgate-lb >>"$out/lb.log" 2>&1 & pid[lb]=$!
}
stop() { # name: SIGTERM, up to 15 s to drain, then SIGKILL
  local p=${pid[$1]:-}
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "pid[$1]"
}
cleanup() {
  trap - EXIT INT TERM
  local name
  for name in sale lb api0 api1 workers; do stop "$name"; done
  # An interrupted fault must not leave a service down for everyone else.
  rabbitmqctl -q start_app >/dev/null 2>&1 || true
  scripts/ensure-services.sh >/dev/null 2>&1 || echo "warning: a service is still down; run scripts/ensure-services.sh" >&2
  for q in "${queues[@]}"; do
    rabbitmqctl -q delete_queue "$q.$run" >/dev/null 2>&1 || true
  done
  rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"seatgate.$run\">>), false, <<\"faults\">>)." >/dev/null 2>&1 || true
  if [ -n "$cluster" ] && [ -z "${FAULTS_KEEP:-}" ]; then scripts/redis-cluster.sh down "$cluster_dir"; fi
  if [ -n "${FAULTS_KEEP:-}" ]; then
    echo "kept the database seatgate_$run and the Redis keys $run:*${cluster:+ (and the cluster in $cluster_dir: scripts/redis-cluster.sh down $cluster_dir)}" >&2
  else
    redis-cli -p 6379 --scan --pattern "$run:*" 2>/dev/null | xargs -r -n 500 redis-cli -p 6379 del >/dev/null 2>&1 || true
    psql -q -h 127.0.0.1 -U postgres -c "drop database if exists seatgate_$run with (force)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
ready() { curl -fsS -m 2 "$1/health/ready" >/dev/null 2>&1; }
wait_ready() { # url seconds
  for _ in $(seq 1 $(($2 * 10))); do
    ready "$1" && return 0
    sleep 0.1
  done
  return 1
}
sql() { psql -h 127.0.0.1 -U postgres -d "seatgate_$run" -At -c "$1"; }
count() { sql "$1" 2>/dev/null || echo "?"; }

$bin/seatgate migrate >"$out/setup.log" 2>&1
start_api 0; start_api 1; start_workers; start_lb
wait_ready "$lb" 60 || { echo "seatgate did not start; see $out" >&2; exit 1; }

# The probe customer: its own screen and showtime, so the sale never takes its seats.
probe_state="$out/probe.json"
python3 - "$lb" "$probe_state" <<'PY' >>"$out/setup.log" 2>&1 || { echo "probe set-up failed; see $out/setup.log" >&2; exit 1; }
import datetime, json, sys, urllib.request, uuid
lb, state = sys.argv[1], sys.argv[2]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(lb + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)
admin = call("POST", "/api/v1/auth/login", {"email": "admin@seatgate.local", "password": "admin-password"})["access_token"]
movie = call("POST", "/api/v1/movies", {"title": "Probe", "duration_minutes": 90, "genres": ["drama"]}, admin)["id"]
theater = call("POST", "/api/v1/theaters", {"name": "Probe Theater", "city": "Probeville"}, admin)["id"]
rows = [{"label": f"P{r}", "seats": 20, "category": "standard"} for r in range(1, 11)]
screen = call("POST", f"/api/v1/theaters/{theater}/screens", {"name": "Probe Screen", "rows": rows}, admin)["id"]
starts = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:00:00Z")
show = call("POST", "/api/v1/showtimes", {"movie_id": movie, "screen_id": screen, "starts_at": starts,
                                          "prices": {"standard": 1000}, "currency": "EUR"}, admin)["id"]
seats = [s["id"] for s in call("GET", f"/api/v1/screens/{screen}")["seats"]]
user = call("POST", "/api/v1/auth/register",
            {"email": f"probe-{uuid.uuid4().hex[:8]}@example.com", "password": "probe-password", "name": "Probe"})
json.dump({"token": user["access_token"], "showtime": show, "seats": seats, "next": 0}, open(state, "w"))
PY

# Seconds from $2 (epoch) until one purchase of the probe customer is confirmed end to end, or
# "never" after $3 seconds.
probe() {
  python3 - "$lb" "$probe_state" "$1" "$2" <<'PY'
import json, sys, time, urllib.error, urllib.request, uuid
lb, state_file, t0, budget = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
state = json.load(open(state_file))
token, show, seats = state["token"], state["showtime"], state["seats"]
deadline = t0 + budget
def call(method, path, body=None, headers=None):
    req = urllib.request.Request(lb + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception:
        return 0, None
def done(result):
    json.dump(state, open(state_file, "w"))
    print(result)
    sys.exit(0 if result != "never" else 1)
while time.time() < deadline:
    seat = seats[state["next"] % len(seats)]
    state["next"] += 1
    status, hold = call("POST", f"/api/v1/showtimes/{show}/holds", {"seat_ids": [seat]})
    if status != 201:
        time.sleep(0.2)
        continue
    key, reservation = str(uuid.uuid4()), None
    while time.time() < deadline:
        status, body = call("POST", f"/api/v1/holds/{hold['hold_id']}/checkout", {"payment_token": "tok_ok"},
                            {"Idempotency-Key": key})
        if status == 202:
            reservation = body["reservation_id"]
            break
        if status in (404, 409, 410, 422):
            break
        time.sleep(0.2)
    while reservation and time.time() < deadline:
        status, body = call("GET", f"/api/v1/reservations/{reservation}")
        if status == 200 and body["status"] == "confirmed":
            done(f"{time.time() - t0:.1f}")
        if status == 200 and body["status"] != "payment_pending":
            break
        time.sleep(0.1)
done("never")
PY
}

inject() {
  case "$1" in
    none) ;;
    redis)
      redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
      sleep 1
      (cd "$redis_dir" && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null) ;;
    worker)
      kill -KILL "${pid[workers]}" 2>/dev/null || true; wait "${pid[workers]}" 2>/dev/null || true
      sleep 1; start_workers ;;
    rabbitmq)
      rabbitmqctl -q stop_app >/dev/null; sleep 2; rabbitmqctl -q start_app >/dev/null ;;
    api)
      kill -KILL "${pid[api0]}" 2>/dev/null || true; wait "${pid[api0]}" 2>/dev/null || true ;;
    postgres)
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main restart -m fast >/dev/null ;;
    gateway)
      stop workers
      SEATGATE_PAYMENT_FAILURE_RATE=0.3 start_workers ;;
    redis-long)
      # A slow gateway (2 s a charge) for the rest of the sale, so that charges are in flight
      # when Redis goes: they succeed at the gateway and then cannot claim their seats.
      stop workers
      SEATGATE_PAYMENT_LATENCY_MS=2000 start_workers
      sleep 3
      redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
      sleep "${REDIS_DOWN_SECS:-90}"
      (cd "$redis_dir" && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null) ;;
    postgres-long)
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main stop -m fast >/dev/null
      sleep "${PG_DOWN_SECS:-45}"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start >/dev/null ;;
    redis-failover) failover ;;
  esac
}

# redis-failover: kills the master of the hot showtime's slot, waits for its replica to be
# promoted (by the cluster, or by CLUSTER FAILOVER TAKEOVER after FAILOVER_TAKEOVER_SECS) and
# for cluster_state:ok, and writes what happened to $out/failover.md.
failover() {
  local hot node
  hot=$(sql "select showtime_id from reservations group by showtime_id order by count(*) desc limit 1")
  node=$(redis-cli -p "$(first_cluster_port)" cluster nodes)
  # the port of the master owning the slot, of its replica, and the slot
  read -r master replica slot < <(python3 - "$hot" "$node" "$(redis-cli -p "$(first_cluster_port)" cluster keyslot "{st:$hot}")" <<'PY'
import sys
hot, nodes, slot = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split() for l in nodes.splitlines() if l.strip()]
port = lambda r: r[1].split('@')[0].rsplit(':', 1)[1]
def owns(r):
    for part in r[8:]:
        if part.startswith('['):
            continue
        lo, _, hi = part.partition('-')
        if int(lo) <= slot <= int(hi or lo):
            return True
    return False
master = next(r for r in rows if 'master' in r[2] and 'fail' not in r[2] and owns(r))
replica = next(r for r in rows if r[3] == master[0] and 'fail' not in r[2])
print(port(master), port(replica), slot)
PY
)
  local t_kill t_promoted how="" role
  echo "- hot showtime $hot (slot $slot): master 127.0.0.1:$master killed (SIGKILL), replica 127.0.0.1:$replica" >"$out/failover.md"
  t_kill=$(now)
  kill -KILL "$(cat "$cluster_dir/node-$master/redis.pid")"
  for _ in $(seq 1 $((${FAILOVER_TAKEOVER_SECS:-20} * 10))); do
    role=$(redis-cli -p "$replica" role 2>/dev/null | head -1)
    [ "$role" = "master" ] && { how="by the cluster itself (replica elected after cluster-node-timeout 2 s)"; break; }
    sleep 0.1
  done
  if [ -z "$how" ]; then
    redis-cli -p "$replica" cluster failover takeover >/dev/null
    how="by CLUSTER FAILOVER TAKEOVER on the replica (not elected within ${FAILOVER_TAKEOVER_SECS:-20} s)"
    for _ in $(seq 1 100); do
      [ "$(redis-cli -p "$replica" role 2>/dev/null | head -1)" = "master" ] && break
      sleep 0.1
    done
  fi
  t_promoted=$(since "$t_kill")
  for _ in $(seq 1 300); do
    redis-cli -p "$replica" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
    sleep 0.1
  done
  echo "- replica promoted $t_promoted s after the kill, $how; cluster_state:ok again $(since "$t_kill") s after the kill" >>"$out/failover.md"
}
first_cluster_port() { # a live node of the run's cluster
  local p
  for p in $(echo "$SEATGATE_REDIS_CLUSTER_NODES" | tr ',' '\n' | sed 's#.*:##'); do
    redis-cli -p "$p" ping >/dev/null 2>&1 && { echo "$p"; return; }
  done
}

heal() { # undo what a fault left behind before the next one
  case "$1" in
    api)
      start_api 0
      wait_ready "http://127.0.0.1:${api_ports[0]}" 60 || echo "warning: api0 did not come back" >&2 ;;
    gateway | redis-long) stop workers; start_workers ;;
  esac
}

queued() { # messages in the payment queue and the retry queues of this run
  rabbitmqctl -q list_queues name messages 2>/dev/null |
    awk -v run="$run" '$1 == "payments." run || ($1 ~ /^payments\.retry\./ && substr($1, length($1) - length(run)) == "." run) {n += $2} END {print n + 0}'
}
settle() { # until nothing is pending and the payment queues are empty (SETTLE_SECS, 180 s, at most:
  # after a long outage the reservations only expire at their deadlines)
  local pending
  for _ in $(seq 1 $((${SETTLE_SECS:-180} * 2))); do
    pending=$(count "select count(*) from reservations where status = 'payment_pending'")
    [ "$pending" = "0" ] && [ "$(queued)" = "0" ] && return 0
    sleep 0.5
  done
  return 1
}
delta() { # before after -> after - before, or ? when either is unknown
  if [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then echo $(($2 - $1)); else echo "?"; fi
}
check() { # report file: the invariant checker (tried again if it could not run at all)
  local try
  for try in 1 2 3; do
    # The command's log goes to stderr (setup.log), its report alone to stdout.
    SEATGATE_DATABASE_ACQUIRE_TIMEOUT_MS=10000 SEATGATE_REDIS_TIMEOUT_MS=5000 \
      $bin/seatgate check-invariants --slack-secs 5 >"$1" 2>>"$out/setup.log" || true
    python3 -c "import json,sys; json.load(open(sys.argv[1]))['violations']" "$1" 2>/dev/null && return 0
    echo "warning: the invariant checker did not run (try $try); see $out/setup.log" >&2
    sleep 2
  done
}
field() { # file key -> value of a top-level key of a JSON file, or ?
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo "?"
}

# Checkout keys claimed but never answered: counted once the sale has ended, so older than any
# request still in flight (the sale's request timeout is 10 s).
stuck_keys="select count(*) from idempotency_keys where response_status is null and created_at < now() - interval '10 seconds'"
header='| fault | requests | client errors | bookings | refunds | violations | recovery (s) | settled (s) |'
printf '%s\n|---|---:|---:|---:|---:|---:|---:|---:|\n' "$header" | tee "$out/table.md"
status=0
n=0
for fault in "${faults[@]}"; do
  n=$((n + 1))
  tag="$n-$fault"
  bookings_before=$(count "select count(*) from bookings where status = 'confirmed'")
  refunds_before=$(count "select count(*) from payments where status = 'refunded'")
  stuck_before=$(count "$stuck_keys")
  $bin/seatgate-bench sale --api "$lb" --users "$sale_users" --duration-secs "$sale_secs" \
    --showtimes "$sale_showtimes" --think-ms "$sale_think_ms" --pay-ms "$sale_pay_ms" --json \
    >"$out/sale-$tag.json" 2>"$out/sale-$tag.log" &
  pid[sale]=$!
  # Inject once the customers are buying (set-up time varies), not at a fixed time after start.
  for _ in $(seq 1 1800); do
    grep -q '^sale: running' "$out/sale-$tag.log" 2>/dev/null && break
    kill -0 "${pid[sale]}" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$inject_after"
  echo "== $fault: injecting at $(date -u +%H:%M:%S)" >>"$out/setup.log"
  t0=$(now)
  inject "$fault"
  recovery=$(probe "$t0" 240 || true)
  recovery=${recovery:-?}
  wait "${pid[sale]}" || echo "warning: $fault: the sale failed; see $out/sale-$tag.log" >&2
  unset "pid[sale]"
  heal "$fault"
  wait_ready "$lb" 60 || echo "warning: $fault: the lb is not ready 60 s after the fault" >&2
  settle || echo "warning: $fault: the system did not settle within ${SETTLE_SECS:-180} s" >&2
  check "$out/invariants-$tag.json"
  violations=$(python3 -c "import json; print(len(json.load(open('$out/invariants-$tag.json'))['violations']))" 2>/dev/null || echo "?")
  requests=$(field "$out/sale-$tag.json" requests)
  errors=$(field "$out/sale-$tag.json" errors)
  settled=$(python3 -c "import json; d=json.load(open('$out/sale-$tag.json')); print(f\"{d['settle_secs']:.1f}\" + ('' if d['still_pending'] == 0 else f\" ({d['still_pending']} pending)\"))" 2>/dev/null || echo "?")
  bookings_after=$(count "select count(*) from bookings where status = 'confirmed'")
  refunds_after=$(count "select count(*) from payments where status = 'refunded'")
  bookings=$(delta "$bookings_before" "$bookings_after")
  refunds=$(delta "$refunds_before" "$refunds_after")
  stuck=$(delta "$stuck_before" "$(count "$stuck_keys")")
  # Where every charge of the run ended (invariant 8): booked, refunded, or neither.
  money=$(count "select count(*) filter (where g.status = 'charged' and p.status = 'succeeded') || ' booked, ' ||
                        count(*) filter (where g.status = 'refunded') || ' refunded, ' ||
                        count(*) filter (where g.status = 'charged' and p.status <> 'succeeded') || ' charged and neither, ' ||
                        (select count(*) from dead_letters) || ' dead-lettered so far'
                   from gateway_charges g join payments p on p.id = g.payment_id")
  echo "- $fault: charges at the gateway: $money" >>"$out/money.md"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$fault" "$requests" "$errors" "$bookings" "$refunds" \
    "$violations" "$recovery" "$settled" | tee -a "$out/table.md"
  [ "$violations" = "0" ] && [ "$recovery" != "never" ] && [ "$requests" != "?" ] || status=1
  python3 - "$tag" "$out/sale-$tag.json" "$out/invariants-$tag.json" "$stuck" >>"$out/details.md" 2>/dev/null <<'PY' || true
import json, sys
fault, sale, inv, stuck = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
print(f"### {fault}\n")
try:
    d = json.load(open(sale))
    print(f"- holds granted {d['holds_granted']}, seat conflicts {d['hold_conflicts']}, checkouts accepted "
          f"{d['checkouts_accepted']} ({d['checkout_retries']} retries with the same key, "
          f"{d['checkouts_abandoned']} abandoned after every retry)")
    print(f"- reservations: {d['confirmed']} confirmed, {d['failed']} failed, {d['expired']} expired, "
          f"{d['still_pending']} still pending after {d['settle_secs']:.1f} s")
    for title, m in (("client-visible errors", d["errors_by_kind"]), ("other refusals (not errors)", d["refusals"]),
                     ("why reservations did not confirm", d["failure_reasons"])):
        if m:
            print(f"- {title}: " + ", ".join(f"{n} x `{k}`" for k, n in sorted(m.items(), key=lambda kv: -kv[1])))
except Exception as e:
    print(f"- no sale summary ({e})")
try:
    for v in json.load(open(inv))["violations"]:
        print(f"- VIOLATION {v['invariant']}: {v['detail']}")
except Exception as e:
    print(f"- no checker report ({e})")
if stuck != "0":
    print(f"- Idempotency-Keys left \"in progress\" (claimed, never answered): {stuck}")
print()
PY
done
cat "$out/money.md" 2>/dev/null | tee -a "$out/details.md"
[ -f "$out/failover.md" ] && { echo; echo "redis-failover:"; cat "$out/failover.md"; } | tee -a "$out/details.md"
echo "details: $out"
exit $status
