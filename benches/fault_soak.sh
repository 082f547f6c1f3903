#!/usr/bin/env bash
# Fault soak of oidc-gateway (issue 14, point 4). One command, from the repository root:
#
#   bash benches/fault_soak.sh                   # 10 minutes
#   bash benches/fault_soak.sh --minutes 2 --bin-dir /some/dir   # prebuilt oidc-gateway + bench-env
#
# Two gateway instances (same config, same public_url, as behind a load balancer) share one
# Redis (session.store = "redis"; Redis runs with appendonly yes, so a restart keeps sessions),
# in front of an nginx upstream and two development providers (bench-env provider): "dev" with
# day-long tokens (browsing, logins, logouts, bearer API tokens) and "short" with 15 s access
# tokens / 30 s ID tokens (sessions that the gateway has to refresh). For N minutes a modest mixed
# load runs (benches/support/fault_soak.py, python3 stdlib only; both instances alternately):
#   browse   authenticated API requests over a pool of logged-in sessions ("dev" provider)
#   bearer   Authorization: Bearer <JWT access token> on a `bearer = true` route
#   login    full code flows (302 → provider with login_hint → callback, on the other instance)
#   refresh  authenticated requests over a pool of "short" sessions (refresh every ~15 s)
#   logout   a fresh login, one request, /oauth2/logout, then the old cookie must be refused
#   public   the public route (sees upstream faults only)
# while a fault script restarts, one at a time and each several times, the upstream (nginx),
# both providers and Redis (down 5-15 s), and sends SIGHUP reloads to both gateways between
# faults. A fault window lasts from the kill until both gateways report healthy again (/readyz,
# oidc_gateway_provider_up, oidc_gateway_session_store_up, a public request through each) plus
# a grace period. Checks (exit 1 naming every failed one):
#   1. no 5xx (and no connection error) outside fault windows;
#   2. every 5xx inside a window is the documented one: 502 (upstream) or 503 with Retry-After
#      and the documented body (provider_unavailable / session_store_unavailable / HTML page);
#   3. outside windows every request got its expected answer (200, a login that completes, a
#      logged-out cookie refused);
#   4. no session lost: "must survive" sessions (valid just before a Redis restart) are valid
#      after it on both instances; no browsing session ever refused; all valid at the end;
#   5. both gateway processes alive at the end, no "panicked" in their logs;
#   6. RSS (VmRSS) of each gateway within 10 % between the first minute after warm-up and the
#      last minute (medians of 5 s samples);
#   7. open file descriptors of each gateway back within +10 of the pre-load baseline once the
#      load stopped and idle connections timed out (server.keepalive_timeout = 5s here);
#   8. refreshes really happened (oidc_gateway_auth_events_total{event="refreshed"} > 0) and
#      bearer tokens were accepted.
#
# Options: --minutes 10  --bin-dir DIR (oidc-gateway and bench-env from DIR, no build)
#          --port 4780 (gateways +0 and +1, admin +10 and +11; upstream +2, providers +3 and +4,
#          Redis +5)  --seed N (fault schedule)  --keep (leave the temporary directory)
#          --out FILE (markdown; default $CARGO_TARGET_DIR/fault-soak.md)
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10; bin_dir=""; port=4780; seed=""; keep=0
target_dir=${CARGO_TARGET_DIR:-target}
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "fault_soak: $*" >&2; exit 1; }

need_apt=()
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
[ -n "$bin_dir" ] || command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # pingora's zlib-ng build
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -n "$bin_dir" ]; then
  bin="$bin_dir/oidc-gateway"; helper="$bin_dir/bench-env"
  [ -x "$bin" ] && [ -x "$helper" ] || die "--bin-dir $bin_dir must hold oidc-gateway and bench-env"
else
  echo "== cargo build --release" >&2
  cargo build --release --quiet --bin oidc-gateway --example bench-env
  bin="$target_dir/release/oidc-gateway"
  helper="$target_dir/release/examples/bench-env"
fi
[ -n "$out" ] || out="$target_dir/fault-soak.md"
# Short token lifetimes and bearer tokens need the provider flags added for this soak.
helper_usage=$("$helper" 2>&1 || true)
if [[ $helper_usage == *--bearer-out* ]]; then helper_flags=1; else helper_flags=0; fi
[ $helper_flags = 1 ] || echo "== note: $helper has no --bearer-out / token lifetime flags" \
  "(an older build): no bearer load, and refreshes cannot be exercised" >&2

gw1=$port; gw2=$((port + 1)); admin1=$((port + 10)); admin2=$((port + 11))
up_port=$((port + 2)); op_dev=$((port + 3)); op_short=$((port + 4)); redis_port=$((port + 5))
for p in $gw1 $gw2 $admin1 $admin2 $up_port $op_dev $op_short $redis_port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (try --port)"; fi
done

tmp=$(mktemp -d /tmp/fault-soak.XXXXXX)
mkdir -p "$tmp/pids"
cleanup() {
  # Only what this run started: the driver and the processes it recorded in $tmp/pids.
  [ -n "${driver:-}" ] && kill "$driver" 2>/dev/null || true
  for f in "$tmp"/pids/*; do
    [ -f "$f" ] || continue
    p=$(cat "$f"); [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  sleep 0.5
  for f in "$tmp"/pids/*; do
    [ -f "$f" ] || continue
    p=$(cat "$f"); [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  if [ $keep = 1 ]; then echo "(logs kept in $tmp)" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- nginx upstream ---------------------------------------------------------------------------
mkdir -p "$tmp/www" "$tmp/ngx"
chmod 755 "$tmp" "$tmp/www"   # nginx workers run as nobody when started as root
printf 'hello from the upstream\n' >"$tmp/www/index.html"
cat >"$tmp/ngx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/ngx/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $tmp/ngx/body; proxy_temp_path $tmp/ngx/proxy; fastcgi_temp_path $tmp/ngx/fcgi;
  uwsgi_temp_path $tmp/ngx/uwsgi; scgi_temp_path $tmp/ngx/scgi;
  access_log off;
  keepalive_timeout 5s;
  server { listen 127.0.0.1:$up_port; root $tmp/www;
           location / { try_files /index.html =404; default_type text/plain; } }
}
EOF

# --- Redis: persistent (AOF), its own directory -------------------------------------------------
mkdir -p "$tmp/redis"
cat >"$tmp/redis/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
dir $tmp/redis
daemonize no
logfile $tmp/redis/redis.log
save ""
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
EOF

# --- gateway config (both instances: same file but for the listeners) ----------------------------
secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
public_url="http://localhost:$gw1"
session_key=$("$bin" keygen)
audience="api://soak"
gateway_config() { # listen admin reload-generation
  cat <<EOF
# fault soak, reload generation $3
[server]
listen = "127.0.0.1:$1"
public_url = "$public_url"
keepalive_timeout = "5s"

[admin]
listen = "127.0.0.1:$2"

[providers.dev]
issuer = "http://127.0.0.1:$op_dev"
client_id = "bench"
client_secret = "$secret"
scopes = ["openid", "profile", "email"]
userinfo = true
jwks_min_refetch_interval = "2s"
$([ $helper_flags = 1 ] && echo "audience = \"$audience\"")

[providers.short]
issuer = "http://127.0.0.1:$op_short"
client_id = "bench"
client_secret = "$secret"
scopes = ["openid", "profile", "email"]
userinfo = true
jwks_min_refetch_interval = "2s"

[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:$up_port"
auth = "public"
provider = "dev"

$([ $helper_flags = 1 ] && cat <<EOR
[[route]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:$up_port"
provider = "dev"
bearer = true
EOR
)

[[route]]
name = "refresh"
path = "/r"
upstream = "http://127.0.0.1:$up_port"
provider = "short"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:$up_port"
provider = "dev"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Role = ["role.code", "role"]
$([ $(($3 % 2)) = 1 ] && echo 'X-Auth-Email = "email"')

[session]
keys = ["$session_key"]
secure = true
idle_timeout = "30m"
max_lifetime = "8h"
store = "redis"
redis_url = "redis://127.0.0.1:$redis_port"
EOF
}
for i in 1 2; do
  eval "l=\$gw$i a=\$admin$i"
  gateway_config "$l" "$a" 0 >"$tmp/gateway-$i.toml"
  "$bin" check --config "$tmp/gateway-$i.toml" >"$tmp/check-$i.log" 2>&1 \
    || { cat "$tmp/check-$i.log" >&2; die "the generated config does not pass check"; }
done
# The driver rewrites the configs before each SIGHUP (a changed route header, generation N).
cat >"$tmp/config.sh" <<EOF
$(declare -f gateway_config)
$(declare -p public_url op_dev op_short secret helper_flags audience up_port session_key redis_port)
EOF

prov_args=()
[ $helper_flags = 1 ] && prov_args=(--bearer-audience "$audience" --bearer-out "$tmp/bearer-token" --bearer-lifetime 600)
short_args=()
[ $helper_flags = 1 ] && short_args=(--access-token-lifetime 15 --id-token-lifetime 30)

python3 - "$tmp/env.json" <<EOF
import json, sys
env = {
  "tmp": "$tmp", "minutes": float("$minutes"), "seed": "$seed", "out": "$out",
  "public_host": "localhost:$gw1", "bin": "$bin", "helper_flags": $helper_flags,
  "gateways": [
    {"name": "gw1", "port": $gw1, "admin": $admin1, "config": "$tmp/gateway-1.toml", "log": "$tmp/gateway-1.log"},
    {"name": "gw2", "port": $gw2, "admin": $admin2, "config": "$tmp/gateway-2.toml", "log": "$tmp/gateway-2.log"},
  ],
  "gateway_argv": ["$bin", "run", "--config"],
  "reconfig": ["bash", "-c", "source $tmp/config.sh && gateway_config \"\$1\" \"\$2\" \"\$3\" >\"\$4.new\" && mv \"\$4.new\" \"\$4\"", "reconfig"],
  "upstream": {"argv": ["/usr/sbin/nginx", "-c", "$tmp/ngx/nginx.conf", "-e", "$tmp/ngx/error.log"],
               "port": $up_port, "log": "$tmp/ngx/stderr.log"},
  "providers": [
    {"name": "dev", "port": $op_dev, "log": "$tmp/provider-dev.log",
     "argv": ["$helper", "provider", "--port", "$op_dev", "--redirect-uri", "$public_url/oauth2/callback",
              "--client-secret", "$secret"] + json.loads('''$(printf '%s\n' "${prov_args[@]}" | python3 -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin if l.strip()]))')''')},
    {"name": "short", "port": $op_short, "log": "$tmp/provider-short.log",
     "argv": ["$helper", "provider", "--port", "$op_short", "--redirect-uri", "$public_url/oauth2/callback",
              "--client-secret", "$secret"] + json.loads('''$(printf '%s\n' "${short_args[@]}" | python3 -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin if l.strip()]))')''')},
  ],
  "bearer_file": "$tmp/bearer-token" if $helper_flags else "",
  "redis": {"argv": ["redis-server", "$tmp/redis/redis.conf"], "port": $redis_port, "log": "$tmp/redis/stderr.log"},
}
json.dump(env, open(sys.argv[1], "w"), indent=1)
EOF

echo "== fault soak: $minutes minutes, two gateways on :$gw1 and :$gw2, Redis :$redis_port (logs in $tmp)" >&2
set +e
python3 benches/support/fault_soak.py "$tmp/env.json" &
driver=$!
wait $driver
rc=$?
driver=""
set -e
if [ $rc != 0 ] && [ $rc != 1 ]; then
  echo "== the driver stopped with status $rc; last gateway log lines:" >&2
  tail -n 20 "$tmp"/gateway-*.log >&2 || true
fi
exit $rc
