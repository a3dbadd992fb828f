#!/usr/bin/env bash
# Makes sure PostgreSQL (5432), Redis (6379) and RabbitMQ (5672) answer on 127.0.0.1.
# A service that is installed but down is started; a missing one is named with the way to get it.
# Exit status 0 only when all three answer.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    port_open "$2" && return 0
    sleep 0.25
  done
  echo "error: $1 did not come up on 127.0.0.1:$2 within $3 s" >&2
  return 1
}

missing=()
failed=0

if port_open 5432; then
  echo "postgres: up"
elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "postgres: down, starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port postgres 5432 30 || failed=1
else
  missing+=("PostgreSQL: apt-get install postgresql   (or: docker compose up -d postgres)")
fi

if port_open 6379; then
  echo "redis: up"
elif command -v redis-server >/dev/null 2>&1; then
  echo "redis: down, starting it"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
  wait_port redis 6379 15 || failed=1
else
  missing+=("Redis: apt-get install redis-server   (or: docker compose up -d redis)")
fi

if port_open 5672; then
  echo "rabbitmq: up"
elif command -v rabbitmq-server >/dev/null 2>&1; then
  echo "rabbitmq: down, starting it (this takes a few seconds)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port rabbitmq 5672 90 || failed=1
else
  missing+=("RabbitMQ: apt-get install rabbitmq-server   (or: docker compose up -d rabbitmq)")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "error: these services are not installed:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "Install them (Debian: apt-get update first), or run 'docker compose up -d postgres redis rabbitmq'." >&2
  exit 1
fi
exit $failed
