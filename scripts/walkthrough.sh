#!/usr/bin/env bash
# README's curl walk-through, as a script: an admin creates a showtime, a new user holds two of
# its seats, pays, and gets a ticket. Every step prints what it got; the first step that fails
# prints the server's answer and stops the script (exit 1). Safe to run again and again: the
# user's email is new each run, and so are the theater, screen and showtime.
#   scripts/walkthrough.sh [API_URL]     default http://127.0.0.1:8000 (scripts/up.sh's seatgate-lb)
# The admin is SEATGATE_ADMIN_EMAIL / SEATGATE_ADMIN_PASSWORD (default: the one scripts/up.sh makes).
# Needs bash, curl, jq and GNU date. README.md shows the part between the markers below, and
# tests/api/docs.rs checks that the two are the same.
set -euo pipefail
for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done

# >>> walk-through
API=${1:-http://127.0.0.1:8000}
ADMIN_EMAIL=${SEATGATE_ADMIN_EMAIL:-admin@seatgate.local}
ADMIN_PASSWORD=${SEATGATE_ADMIN_PASSWORD:-admin-password}
# call METHOD PATH [TOKEN] [JSON BODY] [more curl options]: prints the JSON answer; on an
# error status it prints the problem+json the server sent and fails.
call() {
  local method=$1 path=$2 token=${3:-} body=${4:-} out
  local args=(-sS --fail-with-body -X "$method" "$API$path")
  if [ -n "$token" ]; then args+=(-H "authorization: Bearer $token"); fi
  if [ -n "$body" ]; then args+=(-H 'content-type: application/json' -d "$body"); fi
  if ! out=$(curl "${args[@]}" "${@:5}"); then
    echo "FAILED: $method $path: ${out:-no answer}" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

# 1. The admin signs in and creates a movie, a theater, a screen of two rows, a showtime tomorrow.
ADMIN=$(call POST /api/v1/auth/login "" \
  "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | jq -er .access_token)
MOVIE=$(call POST /api/v1/movies "$ADMIN" \
  '{"title":"Alien","duration_minutes":117,"genres":["horror"]}' | jq -er .id)
THEATER=$(call POST /api/v1/theaters "$ADMIN" '{"name":"Kino","city":"Berlin"}' | jq -er .id)
SCREEN=$(call POST "/api/v1/theaters/$THEATER/screens" "$ADMIN" \
  '{"name":"Saal 1","rows":[{"label":"A","seats":10,"category":"standard"},{"label":"B","seats":10,"category":"vip"}]}' \
  | jq -er .id)
STARTS=$(date -u -d tomorrow +%Y-%m-%dT20:00:00Z)
SHOW=$(call POST /api/v1/showtimes "$ADMIN" "{\"movie_id\":\"$MOVIE\",\"screen_id\":\"$SCREEN\",
  \"starts_at\":\"$STARTS\",\"prices\":{\"standard\":1200,\"vip\":2000},\"currency\":\"EUR\"}" | jq -er .id)
call GET "/api/v1/showtimes/$SHOW" | jq -c '{showtime: .id, movie_title, theater_name, starts_at, prices}'

# 2. A new user signs up (a new email each run).
EMAIL="ada-$(date +%s%N)@example.com"
ADA=$(call POST /api/v1/auth/register "" \
  "{\"email\":\"$EMAIL\",\"password\":\"correct horse\",\"name\":\"Ada\"}" | jq -er .access_token)
echo "signed up as $EMAIL"

# 3. Ada holds the first two available seats of that showtime.
SEATS=$(call GET "/api/v1/showtimes/$SHOW/seats" | jq -c '[.seats[] | select(.status == "available") | .id][:2]')
HOLD=$(call POST "/api/v1/showtimes/$SHOW/holds" "$ADA" "{\"seat_ids\":$SEATS}")
echo "$HOLD" | jq -c '{hold_id, seat_ids, expires_at}'

# 4. She checks out with the simulated gateway's tok_ok. The Idempotency-Key (any unique string)
#    makes a retry of this very request return the same reservation instead of a second one.
KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
RES=$(call POST "/api/v1/holds/$(echo "$HOLD" | jq -er .hold_id)/checkout" "$ADA" \
  '{"payment_token":"tok_ok"}' -H "Idempotency-Key: $KEY" | jq -er .reservation_id)
echo "reservation $RES: payment_pending"

# 5. A payment worker charges and books; the reservation settles within seconds.
for _ in $(seq 1 60); do
  STATUS=$(call GET "/api/v1/reservations/$RES" "$ADA" | jq -er .status)
  if [ "$STATUS" != payment_pending ]; then break; fi
  sleep 0.5
done
call GET "/api/v1/reservations/$RES" "$ADA" | jq -c '{status, booking_id, amount, failure_reason}'
if [ "$STATUS" != confirmed ]; then echo "FAILED: the reservation is $STATUS, not confirmed" >&2; false; fi

# 6. Her ticket.
call GET /api/v1/bookings "$ADA" | jq -ec '.items[0] | {ticket_code, seat_ids, amount, currency}'
# <<< walk-through
echo "walk-through done: $EMAIL has a confirmed booking for showtime $SHOW"
