#!/usr/bin/env bash
# Session store benchmark of oidc-gateway (issue 18). One command, from the repository root:
#
#   bash benches/stores.sh              # 3 interleaved rounds × 4 stores × 10 s, then Redis memory
#   bash benches/stores.sh --quick      # 1 round of 3 s (a smoke run)
#
# What it does: builds the release binary and the helper (`bench-env`, benches/support/), then
# starts on loopback, each as a child in a temporary directory:
#   - nginx (Debian, one worker) serving a small body: the upstream;
#   - Redis: a standalone redis-server; a Sentinel group (a master with
#     --min-replicas-to-write 1, one replica, three redis-sentinel processes monitoring it as
#     "gw"); a six-node Redis Cluster (three masters, one replica each);
#   - four gateways (`oidc-gateway run`, one generated config each, identical except
#     `[session]`): the cookie store; store = "redis" on the standalone server; on the Sentinel
#     group; on the Cluster. Each has its own development provider (bench-env provider) in its
#     own process, since a provider knows one redirect URI.
# It logs in for real through each gateway (curl, `login_hint` skips the login page) --sessions
# times, so every Redis store holds sessions it created itself, and checks that each cookie gets
# a 200. The cookie store's cookies are re-minted offline (bench-env mint) before each of its
# runs, as load.sh does, so that none is re-sealed during a run. Then wrk, authenticated requests
# to the login-required route rotating over the session cookies (one per request, round robin),
# interleaved in each round (cookie, standalone, sentinel, cluster, then again) so that
# background noise hits every store alike, and a markdown table of the medians: requests/s and
# p99, each as a ratio to the cookie store.
#
# Then Redis memory, on the standalone server (FLUSHALL first; `used_memory` of INFO memory
# before and after):
#   - 10,000 sessions: copies of one session a real login stored (the sealed value, its TTL), each
#     under a fresh random 43-character id, with its two back-channel logout index sets (`sid:`
#     and `sub:`, one member each: 10,000 distinct users and provider sessions), written with
#     redis-cli --pipe. The copies are sealed to the original id, so they only take up space;
#   - 10,000 entries of the shared revocation stream (`XADD {prefix}revocations MINID ~ ... *
#     e sid:<32 hex>:<unix seconds>`, the gateway's own format; a logout token naming both sid
#     and sub appends a second, `nosid:` entry of the same size), and, apart, the 10,000 logout
#     token `jti` keys that live 24 minutes (default clock_skew) next to them.
#
# Options: --duration 10s  --rounds 3  --connections 64  --threads 1 (wrk threads)
#          --quick (1 round of 3 s)  --sessions 20 (logins per gateway)  --port 4580 (first
#          gateway; gateways +0..3, providers +4..7, nginx +8, admin +10..13, Redis standalone
#          +20, Sentinel master/replica +21/+22, sentinels +23..25, cluster nodes +30..35 with
#          their bus ports +10030..10035)  --memory-entries 10000  --skip-memory
#          --out FILE (markdown; default $CARGO_TARGET_DIR/stores-bench.md)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s; rounds=3; connections=64; threads=1; port=4580; sessions=20; entries=10000
skip_memory=0
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/stores-bench.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --quick) rounds=1; duration=3s; shift ;;
    --sessions) sessions=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --memory-entries) entries=$2; shift 2 ;;
    --skip-memory) skip_memory=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # pingora's zlib-ng build
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== cargo build --release" >&2
cargo build --release --quiet --bin oidc-gateway --example bench-env
bin="$target_dir/release/oidc-gateway"
helper="$target_dir/release/examples/bench-env"

stores="cookie standalone sentinel cluster"
declare -A gw_port op_port admin_port
i=0
for s in $stores; do
  gw_port[$s]=$((port + i)); op_port[$s]=$((port + 4 + i)); admin_port[$s]=$((port + 10 + i))
  i=$((i + 1))
done
up_port=$((port + 8))
redis_port=$((port + 20)); master_port=$((port + 21)); replica_port=$((port + 22))
sentinel_ports="$((port + 23)) $((port + 24)) $((port + 25))"
cluster_ports="$(seq -s ' ' $((port + 30)) $((port + 35)))"

# Every port must be free (the cluster's bus ports too): a server already there would be measured.
all_ports="${gw_port[*]} ${op_port[*]} ${admin_port[*]} $up_port $redis_port $master_port $replica_port $sentinel_ports $cluster_ports"
for p in $cluster_ports; do all_ports+=" $((p + 10000))"; done
python3 - $all_ports <<'EOF'
import socket, sys
busy = []
for p in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        busy.append(p)
    finally:
        s.close()
if busy:
    sys.exit("ports in use: %s (choose another --port)" % " ".join(map(str, busy)))
EOF

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp"   # nginx workers run as nobody when started as root

die() { echo "$*" >&2; exit 1; }
rcli() { redis-cli -h 127.0.0.1 -p "$@"; }

# --- nginx: the upstream -----------------------------------------------------------------------
mkdir -p "$tmp/www" "$tmp/ngx-up"
chmod 755 "$tmp/www"
printf 'hello from the upstream: a small body of about one hundred bytes, like a tiny JSON answer.\n' \
  >"$tmp/www/index.html"
cat >"$tmp/ngx-up/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/ngx-up/nginx.pid;
error_log $tmp/ngx-up/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $tmp/ngx-up/body; proxy_temp_path $tmp/ngx-up/proxy;
  fastcgi_temp_path $tmp/ngx-up/fcgi; uwsgi_temp_path $tmp/ngx-up/uwsgi; scgi_temp_path $tmp/ngx-up/scgi;
  keepalive_requests 1000000;
  access_log off;
  server { listen 127.0.0.1:$up_port; root $tmp/www;
           location / { try_files /index.html =404; default_type text/plain; } }
}
EOF
/usr/sbin/nginx -c "$tmp/ngx-up/nginx.conf" -e "$tmp/ngx-up/error.log" &
pids+=($!)

# --- Redis -------------------------------------------------------------------------------------
# No persistence anywhere: the benchmark measures the request path, not disk writes.
redis() { # dir port args...
  local d=$1 p=$2; shift 2
  mkdir -p "$d"
  redis-server --bind 127.0.0.1 --port "$p" --dir "$d" --save '' --appendonly no \
    --daemonize no --logfile "$d/redis.log" "$@" &
  pids+=($!)
}
wait_ping() { # port
  for _ in $(seq 100); do
    [ "$(rcli "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  die "redis on $1 does not answer"
}
echo "== Redis: standalone, Sentinel group, Cluster" >&2
redis "$tmp/redis" $redis_port
redis "$tmp/master" $master_port --min-replicas-to-write 1 --min-replicas-max-lag 10
redis "$tmp/replica" $replica_port --replicaof 127.0.0.1 $master_port
for p in $cluster_ports; do
  redis "$tmp/cluster-$p" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000
done
for p in $redis_port $master_port $replica_port $cluster_ports; do wait_ping "$p"; done
for p in $sentinel_ports; do
  mkdir -p "$tmp/sentinel-$p"
  cat >"$tmp/sentinel-$p/sentinel.conf" <<EOF
bind 127.0.0.1
port $p
dir $tmp/sentinel-$p
logfile $tmp/sentinel-$p/sentinel.log
sentinel monitor gw 127.0.0.1 $master_port 2
sentinel down-after-milliseconds gw 5000
sentinel failover-timeout gw 60000
EOF
  redis-sentinel "$tmp/sentinel-$p/sentinel.conf" &
  pids+=($!)
done
# Cluster: three masters with one replica each.
cluster_nodes=""
for p in $cluster_ports; do cluster_nodes+=" 127.0.0.1:$p"; done
# shellcheck disable=SC2086
redis-cli --cluster create $cluster_nodes --cluster-replicas 1 --cluster-yes >"$tmp/cluster-create.log" 2>&1 \
  || { cat "$tmp/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
# Ready when every sentinel sees the replica and the two other sentinels, and every cluster
# node says ok.
sentinel_field() { # port field
  rcli "$1" sentinel master gw 2>/dev/null | paste - - | awk -v f="$2" '$1 == f {print $2}'
}
ready=0
for _ in $(seq 300); do
  ready=1
  for p in $sentinel_ports; do
    [ "$(sentinel_field "$p" num-slaves)" -ge 1 ] 2>/dev/null || ready=0
    [ "$(sentinel_field "$p" num-other-sentinels)" -ge 2 ] 2>/dev/null || ready=0
  done
  # The master takes writes only while its replica acknowledges (min-replicas-to-write).
  [[ "$(rcli $master_port info replication 2>/dev/null)" == *min_slaves_good_slaves:1* ]] || ready=0
  for p in $cluster_ports; do
    [[ "$(rcli "$p" cluster info 2>/dev/null)" == *cluster_state:ok* ]] || ready=0
  done
  [ $ready = 1 ] && break
  sleep 0.2
done
[ $ready = 1 ] || die "Sentinel group or Cluster not ready after 60 s (logs in $tmp)"

# --- development providers and the four gateways -----------------------------------------------
secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
session_key=$("$bin" keygen)
start_provider() { # store
  local s=$1
  "$helper" provider --port "${op_port[$s]}" --redirect-uri "http://localhost:${gw_port[$s]}/oauth2/callback" \
    --client-secret "$secret" >"$tmp/issuer-$s" 2>"$tmp/provider-$s.log" &
  pids+=($!)
}
for s in $stores; do start_provider "$s"; done

session_table() { # store: the [session] part that differs
  case $1 in
    cookie) echo 'store = "cookie"' ;;
    standalone) printf 'store = "redis"\nredis_url = "redis://127.0.0.1:%s"\n' $redis_port ;;
    sentinel)
      local n="" p
      for p in $sentinel_ports; do n+="${n:+, }\"redis://127.0.0.1:$p\""; done
      printf 'store = "redis"\n\n[session.redis]\nmode = "sentinel"\nnodes = [%s]\nmaster_name = "gw"\n' "$n" ;;
    cluster)
      local n="" p
      for p in $(echo $cluster_ports | cut -d' ' -f1-3); do n+="${n:+, }\"redis://127.0.0.1:$p\""; done
      printf 'store = "redis"\n\n[session.redis]\nmode = "cluster"\nnodes = [%s]\n' "$n" ;;
  esac
}
declare -A gw_pid
for s in $stores; do
  for _ in $(seq 300); do [ -s "$tmp/issuer-$s" ] && break; sleep 0.1; done
  issuer=$(head -1 "$tmp/issuer-$s")
  [ -n "$issuer" ] || { cat "$tmp/provider-$s.log" >&2; die "the development provider for $s did not start"; }
  # Plain [session] keys first: a [session.redis] table ends them.
  cat >"$tmp/gateway-$s.toml" <<EOF
[server]
listen = "127.0.0.1:${gw_port[$s]}"
public_url = "http://localhost:${gw_port[$s]}"

[admin]
listen = "127.0.0.1:${admin_port[$s]}"

[providers.dev]
issuer = "$issuer"
client_id = "bench"
client_secret = "$secret"
scopes = ["openid", "profile", "email"]
userinfo = true

[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:$up_port"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:$up_port"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Email = "email"
X-Auth-Role = ["role.code", "role"]
X-Auth-Org = ["org.code", "org"]
X-Auth-Activities = "activities"
X-Auth-Selected-Role-Org = "\$.nhsid_nrbac_roles[?@.person_roleid == \$.selected_roleid].org_code"

[session]
keys = ["$session_key"]
secure = true
idle_timeout = "30m"
max_lifetime = "8h"
$(session_table "$s")
EOF
  "$bin" check --config "$tmp/gateway-$s.toml" >/dev/null || die "config for $s does not pass check"
  # Default log level: the access line per request is part of what is measured.
  "$bin" run --config "$tmp/gateway-$s.toml" 2>>"$tmp/gateway-$s.log" &
  gw_pid[$s]=$!
  pids+=($!)
done
for s in $stores; do
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:${admin_port[$s]}/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:${admin_port[$s]}/readyz" >/dev/null \
    || { tail "$tmp/gateway-$s.log" >&2; die "gateway ($s) not ready"; }
done
curl -fs "http://127.0.0.1:$up_port/" >/dev/null || { cat "$tmp/ngx-up/error.log" >&2; die "nginx not answering"; }

# --- real logins: the session cookies -----------------------------------------------------------
login() { # store: one full code flow; prints the session cookie (name=value; ...)
  local url="http://localhost:${gw_port[$1]}" jar loc cb
  jar=$(mktemp -p "$tmp")
  loc=$(curl -s -o /dev/null -w '%{redirect_url}' -H 'Sec-Fetch-Mode: navigate' -c "$jar" -b "$jar" "$url/app")
  cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$loc&login_hint=alice")
  curl -s -o /dev/null -c "$jar" -b "$jar" "$cb"
  awk '$6 ~ /^oidc_session/ && $6 !~ /_login_/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar"
  rm -f "$jar"
}
status_with() { # store cookie
  curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $2" -H 'Accept: application/json' \
    "http://localhost:${gw_port[$1]}/app"
}
mint_cookies() { # the cookie store's cookies, sealed now
  "$helper" mint --config "$tmp/gateway-cookie.toml" --cookie "$cookie_template" --count "$sessions" \
    --out "$tmp/cookies-cookie"
}
echo "== $sessions real logins per gateway" >&2
declare -A cookie_bytes
for s in $stores; do
  : >"$tmp/cookies-$s"
  for _ in $(seq "$sessions"); do
    c=$(login "$s")
    [ -n "$c" ] || { tail "$tmp/gateway-$s.log" >&2; die "login through the $s gateway failed"; }
    echo "$c" >>"$tmp/cookies-$s"
  done
  cookie_bytes[$s]=$(($(head -1 "$tmp/cookies-$s" | wc -c) - 1))
  if [ "$s" = cookie ]; then
    cookie_template=$(head -1 "$tmp/cookies-cookie")
    mint_cookies
  fi
  while read -r c; do
    st=$(status_with "$s" "$c")
    [ "$st" = 200 ] || die "a session cookie of the $s gateway got $st, not 200"
  done <"$tmp/cookies-$s"
  st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: text/html' "http://localhost:${gw_port[$s]}/app")
  [ "$st" = 302 ] || die "a browser without a session got $st from the $s gateway, not 302"
done
stored=$(rcli $redis_port --scan --pattern 'oidc-gateway:s:*' | wc -l)
[ "$stored" -ge "$sessions" ] || die "standalone Redis holds $stored sessions, expected $sessions"

# wrk script: each request carries the next cookie of a file.
cat >"$tmp/sessions.lua" <<'EOF'
local cookies, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
end
function request()
  i = i % #cookies + 1
  wrk.headers["Cookie"] = cookies[i]
  return wrk.format()
end
EOF

# wrk output → "rps p50_ms p99_ms requests non2xx"
parse_wrk() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { n = $1 }
    /Non-2xx/ { bad = $NF }
    END { printf "%s %.3f %.3f %s %d\n", rps, p50, p99, n, bad + 0 }'
}
run() { # store connections duration
  local s=$1
  [ "$s" = cookie ] && mint_cookies   # fresh last_seen: no re-seal during the run
  wrk -t "$threads" -c "$2" -d "$3" --latency -H "Host: localhost:${gw_port[$s]}" \
    -H "Accept: application/json" -s "$tmp/sessions.lua" "http://127.0.0.1:${gw_port[$s]}/app" \
    -- "$tmp/cookies-$s" | parse_wrk
}
load_samples=()
sample_load() { load_samples+=("$(cut -d' ' -f1 /proc/loadavg)"); }

echo "== warm-up" >&2
for s in $stores; do run "$s" "$connections" 2s >/dev/null; done
echo "== $rounds rounds × 4 stores × $duration at $connections connections (wrk -t$threads)" >&2
sample_load
: >"$tmp/results"
for r in $(seq "$rounds"); do
  for s in $stores; do
    line=$(run "$s" "$connections" "$duration")
    echo "$r $s $line" >>"$tmp/results"
    echo "   round $r, $s: $line" >&2
  done
  sample_load
done

# --- Redis memory, on the standalone server -----------------------------------------------------
used_memory() { rcli $redis_port info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'; }
memory_rows=""
if [ $skip_memory = 0 ]; then
  echo "== Redis memory: $entries sessions, $entries revocation entries" >&2
  key=$(rcli $redis_port --scan --pattern 'oidc-gateway:s:*' | awk 'NR == 1')
  rcli $redis_port --raw get "$key" | tr -d '\n' >"$tmp/session-value"
  value_bytes=$(rcli $redis_port strlen "$key")
  ttl_ms=$(rcli $redis_port pttl "$key")
  key_usage=$(rcli $redis_port memory usage "$key")
  sid_set=$(rcli $redis_port --scan --pattern 'oidc-gateway:sid:*' | awk 'NR == 1')
  sub_set=$(rcli $redis_port --scan --pattern 'oidc-gateway:sub:*' | awk 'NR == 1')
  sid_usage=$([ -n "$sid_set" ] && rcli $redis_port memory usage "$sid_set" || echo 0)
  index_ttl_ms=$(rcli $redis_port pttl "${sid_set:-$sub_set}")
  indexes=""
  [ -n "$sid_set" ] && indexes+=" sid"
  [ -n "$sub_set" ] && indexes+=" sub"
  # RESP for redis-cli --pipe: kind = sessions | indexes | stream | jti
  gen() {
    python3 - "$1" "$entries" "$tmp/session-value" "$ttl_ms" "$index_ttl_ms" "$indexes" <<'EOF'
import secrets, sys, time
kind, n, value_file, ttl, index_ttl, indexes = sys.argv[1:7]
n = int(n)
value = open(value_file, "rb").read()
out = sys.stdout.buffer
def cmd(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
ids = [secrets.token_urlsafe(32) for _ in range(n)]   # 43 characters, as the gateway's ids
assert all(len(i) == 43 for i in ids)
now = int(time.time())
for i, sid in enumerate(ids):
    if kind == "sessions":
        cmd("SET", "oidc-gateway:s:" + sid, value, "PX", ttl)
    elif kind == "indexes":
        for index in indexes.split():
            name = "oidc-gateway:%s:dev:%s" % (index, secrets.token_hex(32))
            cmd("SADD", name, sid)
            cmd("PEXPIRE", name, index_ttl)
    elif kind == "stream":
        min_id = (now - 8 * 3600) * 1000
        cmd("XADD", "oidc-gateway:revocations", "MINID", "~", min_id, "*", "e",
            "sid:%s:%d" % (secrets.token_hex(16), now))
    elif kind == "jti":
        # Kept backchannel::jti_keep: (10 min + 2 × clock_skew) × 2, 24 min with the default skew.
        cmd("SET", "oidc-gateway:jti:revocations:" + secrets.token_hex(32), "done", "PX", 24 * 60 * 1000)
EOF
  }
  pipe() { gen "$1" | rcli $redis_port --pipe >"$tmp/pipe.log" 2>&1 || { cat "$tmp/pipe.log" >&2; die "redis-cli --pipe ($1) failed"; }; }
  rcli $redis_port flushall >/dev/null
  sleep 0.5
  m0=$(used_memory)
  pipe sessions
  m1=$(used_memory)
  pipe indexes
  m2=$(used_memory)
  n_sessions=$(rcli $redis_port --scan --pattern 'oidc-gateway:s:*' | wc -l)
  [ "$n_sessions" = "$entries" ] || die "expected $entries session keys, found $n_sessions"
  one_copy=$(rcli $redis_port --scan --pattern 'oidc-gateway:s:*' | awk 'NR == 1')
  copy_usage=$(rcli $redis_port memory usage "$one_copy")
  rcli $redis_port flushall >/dev/null
  sleep 0.5
  r0=$(used_memory)
  pipe stream
  r1=$(used_memory)
  stream_len=$(rcli $redis_port xlen oidc-gateway:revocations)
  stream_usage=$(rcli $redis_port memory usage oidc-gateway:revocations samples 0)
  pipe jti
  r2=$(used_memory)
  rcli $redis_port flushall >/dev/null
  per() { awk -v d="$1" -v n="$entries" 'BEGIN { printf "%.2f MB (%.0f B each)", d * 10000 / n / 1e6, d / n }'; }
  memory_rows="| sessions (\`oidc-gateway:s:<id>\`, sealed value $value_bytes B, TTL as stored) | $(per $((m1 - m0))) |
| their index sets (\`sid:\` and \`sub:\`, one member each) | $(per $((m2 - m1))) |
| **sessions with their indexes** | **$(per $((m2 - m0)))** |
| revocation stream (\`XADD oidc-gateway:revocations\`, $stream_len entries; MEMORY USAGE $stream_usage B) | $(per $((r1 - r0))) |
| logout token \`jti\` keys (one per logout, kept 24 minutes with the default clock_skew) | $(per $((r2 - r1))) |"
  memory_notes="One real session key: MEMORY USAGE $key_usage B (a copy: $copy_usage B), its \`sid:\` set ${sid_usage} B; index sets found after the real login:${indexes:- none}."
fi

# --- report -------------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
loads=$(printf '%s ' "${load_samples[@]}")
{
  echo "### Session stores, $(date -u '+%F %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "Machine: $(nproc) cores, $cpu_model, $ram RAM; wrk ($threads thread), the gateway under test, its"
  echo "Redis processes (and the idle ones) and nginx all share these cores; 1-minute load average"
  echo "(sampled): $loads. Median of $rounds interleaved rounds of $duration at $connections connections,"
  echo "$sessions session cookies per store (real logins of alice; cookie store ${cookie_bytes[cookie]} B of cookie,"
  echo "Redis stores ${cookie_bytes[standalone]} B: a sealed session id)."
  echo
  echo "| store | requests/s | × cookie | p50 ms | p99 ms | p99 × cookie | errors |"
  echo "|---|---|---|---|---|---|---|"
  awk -v stores="$stores" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rps[$2] = rps[$2] " " $3; p50[$2] = p50[$2] " " $4; p99[$2] = p99[$2] " " $5; bad[$2] += $7 }
    END {
      lab["cookie"] = "cookie"; lab["standalone"] = "Redis standalone"
      lab["sentinel"] = "Redis Sentinel (1 master, 1 replica, 3 sentinels)"
      lab["cluster"] = "Redis Cluster (3 masters, 3 replicas)"
      n = split(stores, S, " ")
      c = median(rps["cookie"]); cp = median(p99["cookie"])
      for (i = 1; i <= n; i++) {
        s = S[i]; r = median(rps[s]); p = median(p99[s])
        printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %d |\n", lab[s], r, r / c, median(p50[s]), p, p / cp, bad[s]
      }
    }' "$tmp/results"
  echo
  echo "Every run (round store requests/s p50 p99 requests non-2xx):"
  echo
  sed 's/^/    /' "$tmp/results"
  if [ -n "$memory_rows" ]; then
    echo
    echo "Redis memory per 10,000 (\`used_memory\` delta on the standalone server, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'),"
    echo "$entries written; sessions are copies of one real login's stored session: the dev provider's"
    echo "alice with her ID token kept as the logout hint):"
    echo
    echo "| per 10,000 | used_memory |"
    echo "|---|---|"
    echo "$memory_rows"
    echo
    echo "$memory_notes"
  fi
} | tee "$out"
echo "(written to $out)" >&2
