#!/usr/bin/env bash
# Slow clients (issue 14): does the gateway keep serving while thousands of connections trickle
# a request header a byte at a time? One command, from the repository root:
#
#   bash benches/slow_clients.sh                 # 10,000 slow connections, defaults below
#   bash benches/slow_clients.sh --bin OTHER     # the same against another gateway binary
#   bash benches/slow_clients.sh --nginx         # control: a plain nginx reverse proxy instead
#                                                # (2 workers, client_header_timeout 10s)
#
# Starts on loopback: an nginx upstream (small body), the development provider (bench-env) and
# the gateway (`oidc-gateway run`, a public route, default connection settings unless --config-
# extra adds some). Then, for --rounds rounds:
#   1. quiet: wrk against the public route (requests/s, p99);
#   2. slow: `bench-env trickle` (one thread) opens --connections connections that each send
#      the start of a request header and then one byte every --interval seconds, never finishing
#      it (with --reopen, each one the gateway closes is replaced at once: a sustained attack).
#      Once they are open, the same wrk run measures the normal client beside them, while the gateway's RSS and the slow
#      connections open are sampled every second.
# It prints a markdown table: normal client quiet vs beside the slow ones (ratio of requests/s,
# p99), the gateway's peak RSS, memory per waiting connection ((peak RSS - quiet RSS) / open
# connections at that moment), and how long slow connections lived before the gateway closed
# them (p50, p99, max: `server.request_header_timeout` is 10 s by default), and the CPU used
# (% of one core) by the gateway in the quiet run, by the gateway beside the slow clients and
# by the trickler itself, which shares the same cores.
#
# Options: --connections 10000  --interval 2  --duration 10s (wrk)  --wrk-connections 64
#          --rounds 3  --port 4580 (gateway; upstream +1, provider +3, admin +10)
#          --bin PATH (gateway binary; default: cargo build --release)
#          --config-extra 'TOML lines for [server]'  --reopen  --out FILE (markdown)
set -euo pipefail
cd "$(dirname "$0")/.."

conns=10000; interval=2; duration=10s; wrk_conns=64; rounds=3; port=4580; bin=""; extra=""; reopen=""
control=""
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/slow-clients.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) conns=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --wrk-connections) wrk_conns=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --config-extra) extra=$2; shift 2 ;;
    --reopen) reopen=--reopen; shift ;;
    --nginx) control=nginx; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== cargo build --release" >&2
cargo build --release --quiet --bin oidc-gateway --example bench-env
[ -n "$bin" ] || bin="$target_dir/release/oidc-gateway"
helper="$target_dir/release/examples/bench-env"

up_port=$((port + 1)); op_port=$((port + 3)); admin_port=$((port + 10))
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/www" "$tmp/ngx"
chmod 755 "$tmp" "$tmp/www"
printf 'hello from the upstream: a small body of about one hundred bytes, like a tiny JSON answer.\n' \
  >"$tmp/www/index.html"
cat >"$tmp/ngx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $tmp/ngx/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $tmp/ngx/body; proxy_temp_path $tmp/ngx/proxy;
  fastcgi_temp_path $tmp/ngx/fcgi; uwsgi_temp_path $tmp/ngx/uwsgi; scgi_temp_path $tmp/ngx/scgi;
  keepalive_requests 1000000; access_log off;
  server { listen 127.0.0.1:$up_port; root $tmp/www;
           location / { try_files /index.html =404; default_type text/plain; } }
}
EOF
/usr/sbin/nginx -c "$tmp/ngx/nginx.conf" -e "$tmp/ngx/error.log" &
pids+=($!)

secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
public_url="http://localhost:$port"
"$helper" provider --port "$op_port" --redirect-uri "$public_url/oauth2/callback" \
  --client-secret "$secret" >"$tmp/issuer" 2>"$tmp/provider.log" &
pids+=($!)
for _ in $(seq 300); do [ -s "$tmp/issuer" ] && break; sleep 0.1; done
issuer=$(head -1 "$tmp/issuer")
[ -n "$issuer" ] || { echo "the development provider did not start" >&2; exit 1; }

cat >"$tmp/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
public_url = "$public_url"
$extra

[admin]
listen = "127.0.0.1:$admin_port"

[session]
keys = ["$("$bin" keygen)"]

[providers.dev]
issuer = "$issuer"
client_id = "bench"
client_secret = "$secret"

[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:$up_port"
auth = "public"
EOF
"$bin" run --config "$tmp/gateway.toml" 2>>"$tmp/gateway.log" &
gw=$!
pids+=($gw)
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/public/" >/dev/null || { echo "gateway not serving" >&2; tail "$tmp/gateway.log" >&2; exit 1; }
if [ "$control" = nginx ]; then
  # The control: nginx proxying the same upstream on the gateway's port (the gateway, started
  # and checked above, makes way for it). Measured are its two worker processes.
  kill -9 $gw; wait $gw 2>/dev/null || true
  cat >"$tmp/ngx/proxy.conf" <<EOF
daemon off;
worker_processes 2;
worker_rlimit_nofile 65536;
pid $tmp/ngx/proxy.pid;
error_log $tmp/ngx/proxy-error.log warn;
events { worker_connections 16384; }
http {
  client_body_temp_path $tmp/ngx/pbody; proxy_temp_path $tmp/ngx/pproxy;
  fastcgi_temp_path $tmp/ngx/pfcgi; uwsgi_temp_path $tmp/ngx/puwsgi; scgi_temp_path $tmp/ngx/pscgi;
  keepalive_requests 1000000; access_log off; client_header_timeout 10s;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  server { listen 127.0.0.1:$port;
           location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOF
  /usr/sbin/nginx -c "$tmp/ngx/proxy.conf" -e "$tmp/ngx/proxy-error.log" &
  master=$!
  pids+=($master)
  sleep 1
  gw=$(pgrep -d ' ' -P $master -f 'nginx: worker')
  bin="nginx proxy (control)"
fi

# kB, summed over the measured processes ($gw: the gateway, or the control's nginx workers).
rss() { for p in $gw; do cat "/proc/$p/status"; done | awk '$1 == "VmRSS:" { s += $2 } END { print s + 0 }'; }
# CPU time processes used so far, in clock ticks (utime + stime; fields after the command name).
# A process that has exited counts 0 (in one-wave mode the trickler may end during the run).
ticks() { for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true; done | awk '{ s += $12 + $13 } END { print s + 0 }'; }
hz=$(getconf CLK_TCK)
# wrk's summary: requests/s and the p99 latency in milliseconds.
measure() {
  wrk -t1 -c"$wrk_conns" -d"$duration" --latency "http://127.0.0.1:$port/public/" >"$tmp/wrk.txt" 2>&1 || true
  awk '
    /Requests\/sec/ { rps = $2 }
    $1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                  else if (v ~ /ms$/) { sub(/ms$/, "", v) }
                  else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
                  p99 = v }
    END { printf "%d %.2f\n", rps, p99 }' "$tmp/wrk.txt"
}

rows=()
for r in $(seq "$rounds"); do
  echo "== round $r: quiet" >&2
  t0=$(date +%s.%N); gw0=$(ticks $gw)
  read -r q_rps q_p99 < <(measure)
  t1=$(date +%s.%N); gw1=$(ticks $gw)
  q_cpu=$(awk -v a=$gw0 -v b=$gw1 -v s=$t0 -v e=$t1 -v hz=$hz 'BEGIN { printf "%.0f", 100 * (b - a) / ((e - s) * hz) }')
  q_rss=$(rss)
  echo "== round $r: $conns slow connections" >&2
  "$helper" trickle --port "$port" --connections "$conns" --interval "$interval" \
    --seconds 30 $reopen --status "$tmp/open" >"$tmp/trickle.json" &
  tp=$!
  # Wait until (nearly) all are open, sample memory there, then measure the normal client.
  for _ in $(seq 100); do
    [ -s "$tmp/open" ] && [ "$(cat "$tmp/open")" -ge $((conns * 95 / 100)) ] && break
    sleep 0.2
  done
  peak_rss=0; peak_open=0
  ( while kill -0 $tp 2>/dev/null; do
      echo "$(rss) $(cat "$tmp/open" 2>/dev/null || echo 0)"; sleep 1
    done ) >"$tmp/samples" &
  sp=$!
  # CPU used during the measured run, as % of one core: the trickler's shares the same 2 cores
  # with wrk and the gateway, so it is reported beside the ratio.
  t0=$(date +%s.%N); gw0=$(ticks $gw); tr0=$(ticks $tp)
  read -r s_rps s_p99 < <(measure)
  t1=$(date +%s.%N); gw1=$(ticks $gw); tr1=$(ticks $tp)
  cpu=$(awk -v a=$gw0 -v b=$gw1 -v c=$tr0 -v d=$tr1 -v s=$t0 -v e=$t1 -v hz=$hz \
    -v q=$q_cpu 'BEGIN { w = (e - s) * hz; t = (d >= c ? sprintf("%.0f", 100 * (d - c) / w) : "n/a")
            printf "%s/%.0f/%s", q, 100 * (b - a) / w, t }')
  wait $tp || true
  kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  read -r peak_rss peak_open < <(awk '$1 > m { m = $1; o = $2 } END { print m + 0, o + 0 }' "$tmp/samples")
  per_conn=$(awk -v p="$peak_rss" -v q="$q_rss" -v o="$peak_open" \
    'BEGIN { if (o > 0) printf "%.1f", (p - q) / o; else print "n/a" }')
  life=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["lifetime_p50"], d["lifetime_p99"], d["lifetime_max"], d["closed_by_server"], d["refused"], d["peak_open"])' "$tmp/trickle.json")
  rows+=("$q_rps $q_p99 $s_rps $s_p99 $q_rss $peak_rss $peak_open $per_conn $cpu $life")
  # Let the gateway close what is left before the next quiet run.
  sleep 12
done

{
  echo "### Slow clients ($(date -u +%F), commit $(git rev-parse --short HEAD), $(nproc) cores, binary $bin)"
  echo
  echo "$conns connections trickling a header byte every ${interval}s${reopen:+ (replaced when closed)}, beside wrk -c$wrk_conns -d$duration on the public route."
  echo
  echo "| round | quiet req/s | quiet p99 ms | beside slow req/s | ratio | beside slow p99 ms | p99 ratio | quiet RSS MB | peak RSS MB | open at peak | KB per waiting conn | CPU % gateway quiet/beside, trickler | slow conn lifetime p50/p99/max s | closed by gateway | refused |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"
  i=0
  for row in "${rows[@]}"; do
    i=$((i + 1))
    read -r q_rps q_p99 s_rps s_p99 q_rss peak_rss peak_open per_conn cpu l50 l99 lmax closed refused _ <<<"$row"
    awk -v i=$i -v qr=$q_rps -v qp=$q_p99 -v sr=$s_rps -v sp=$s_p99 -v qm=$q_rss -v pm=$peak_rss \
        -v po=$peak_open -v pc=$per_conn -v cpu=$cpu -v l="$l50/$l99/$lmax" -v c=$closed -v f=$refused 'BEGIN {
      printf "| %d | %d | %.2f | %d | %.2f | %.2f | %.2f | %.1f | %.1f | %d | %s | %s | %s | %d | %d |\n",
        i, qr, qp, sr, (qr > 0 ? sr / qr : 0), sp, (qp > 0 ? sp / qp : 0), qm / 1024, pm / 1024, po, pc, cpu, l, c, f }'
  done
} | tee "$out"
