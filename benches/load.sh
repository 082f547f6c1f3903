#!/usr/bin/env bash
# Load benchmark: requests/s and latency through the gateway for a public route and an
# authenticated route (valid session cookie), same upstream, same run, interleaved.
#
#   bash benches/load.sh [--duration 10s] [--connections 64] [--threads 2] [--port 4480]
#
# Builds the release binary, starts `oidc-gateway demo` (development provider, echo upstream,
# gateway) on loopback, logs in once with curl to get a session cookie, then runs wrk (Debian
# package, installed when missing) against both routes, twice each, alternating.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s; connections=64; threads=2; port=4480; rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v cmake >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq cmake >/dev/null; }
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/oidc-gateway

log=$(mktemp)
RUST_LOG=warn "$bin" demo --port "$port" >/dev/null 2>"$log" &
demo=$!
trap 'kill $demo 2>/dev/null; wait $demo 2>/dev/null; rm -f "$log" "$jar"' EXIT
jar=$(mktemp)
base="http://localhost:$port"
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$((port + 10))/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

# Log in as alice through the development provider (login_hint skips its login page).
loc=$(curl -s -o /dev/null -w '%{redirect_url}' -H 'Sec-Fetch-Mode: navigate' -c "$jar" -b "$jar" "$base/")
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$loc&login_hint=alice")
curl -s -o /dev/null -c "$jar" -b "$jar" "$cb"
cookie=$(awk '$6 ~ /^oidc_session/ && $6 !~ /_login_/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")
[ -n "$cookie" ] || { echo "login failed; gateway log:" >&2; cat "$log" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" -H 'Accept: application/json' "$base/app")
[ "$status" = 200 ] || { echo "session cookie not accepted ($status)" >&2; exit 1; }

run() { # name url [cookie]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t "$threads" -c "$connections" -d "$duration" --latency -H "Host: localhost:$port" -H "Accept: application/json" -H "Cookie: $3" "$2")
  else
    out=$(wrk -t "$threads" -c "$connections" -d "$duration" --latency -H "Host: localhost:$port" -H "Accept: application/json" "$2")
  fi
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo "| target ($connections connections, $duration) | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
  run "public route /public/" "http://127.0.0.1:$port/public/x"
  run "authenticated route /app" "http://127.0.0.1:$port/app" "$cookie"
done
