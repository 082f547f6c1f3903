#!/usr/bin/env bash
# Load benchmark of oidc-gateway (issue 7). One command, from the repository root:
#
#   bash benches/load.sh                # throughput/latency matrix + 10,000-session RSS check
#   bash benches/load.sh --soak         # ... plus a bounded 5-minute soak (RSS must stay flat)
#   bash benches/load.sh --logins       # login throughput only: full code flows per second
#   bash benches/load.sh --allocs       # heap allocations per request: bare pingora, public, auth
#   bash benches/load.sh --perf DIR     # perf profiles (profiling build): bare pingora, public, auth
#                                       # (with --logins: of the logins instead)
#
# What it does: builds the release binary and the helper (`bench-env`, benches/support/), then
# starts on loopback, each as a child in a temporary directory:
#   - nginx (Debian) serving a small body: the upstream;
#   - a plain nginx reverse proxy in front of it (keepalive to the upstream, like the gateway);
#   - a bare pingora proxy in front of it (`bare-proxy`, benches/support/bare_proxy.rs: the same
#     vendored pingora crates and server settings as the gateway, only `upstream_peer`), the
#     control that tells the gateway's own cost from pingora's;
#   - the development OpenID provider (bench-env provider), in its own process;
#   - the gateway itself (`oidc-gateway run` with a generated config) proxying to the nginx
#     upstream: route /public (auth = "public") and route / (login required, the demo's
#     identity headers).
# It logs in once through the provider (curl, `login_hint` skips the login page), then measures
# with wrk, interleaved in each round so that background noise hits every target alike:
#   upstream | nginx proxy | bare pingora | gateway public | gateway authenticated (valid
#   session cookie) | unauthenticated browser flood (every answer a 302 to the provider)
# at each connection count, and prints a markdown table (median of the rounds): requests/s,
# p50, p99, ratios to the nginx proxy and to the bare pingora proxy, and the gateway's peak
# RSS (VmHWM). Then 100,000+ authenticated requests over 10,000 distinct session cookies (minted
# offline with the configured key by `bench-env mint`, from the real login's cookie) and the
# RSS after them. Cookies are re-minted before each authenticated run, as a browser stores the
# re-sealed cookie the gateway sends about once a minute.
#
# Options: --duration 10s  --rounds 3  --connections "64 256"  --threads 1 (wrk threads)
#          --port 4480 (gateway; nginx +1/+2, provider +3, bare pingora +4, admin +10)  --sessions 10000
#          --idle 5000 (idle keep-alive connections held on the bare proxy and the gateway at the
#          end, for the memory each holds; 0: skip)
#          --soak (5 minutes, --soak-seconds N)  --logins (--login-concurrency 16,
#          --login-seconds 20)  --skip-matrix (memory phases only)
#          --allocs (the gateway and the bare proxy built with a counting allocator,
#          benches/support/alloc_report.rs; wrk -c 16 for 5 s per target)
#          --perf DIR (`cargo build --profile profiling`; perf record -g at 999 Hz on the
#          proxy's process during wrk -c 64 for --duration per target; DIR gets perf.data and
#          `perf report` tops per target)
#          --out FILE (markdown; default $CARGO_TARGET_DIR/load-bench.md)
#          --no-build (use the binaries already in $CARGO_TARGET_DIR, e.g. an older build)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s; rounds=3; connections="64 256"; threads=1; port=4480; sessions=10000; idle=5000
soak=0; soak_seconds=300; logins=0; allocs=0; perf_dir=""; build=1 skip_matrix=0; login_conc=16; login_seconds=20
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/load-bench.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --soak) soak=1; shift ;;
    --soak-seconds) soak=1; soak_seconds=$2; shift 2 ;;
    --logins) logins=1; shift ;;
    --allocs) allocs=1; shift ;;
    --no-build) build=0; shift ;;
    --perf) perf_dir=$(realpath -m "$2"); shift 2 ;;
    --skip-matrix) skip_matrix=1; shift ;;
    --login-concurrency) login_conc=$2; shift 2 ;;
    --login-seconds) login_seconds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # pingora's zlib-ng build
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Every connection is a descriptor in the proxies (started below) and in the clients: the idle
# phase holds --idle connections at once.
ulimit -n $((idle + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "== cargo build --release" >&2
profile=release
if [ -n "$perf_dir" ]; then
  profile=profiling
  command -v perf >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
  mkdir -p "$perf_dir"
fi
[ $build = 0 ] || cargo build --profile $profile --quiet --bin oidc-gateway --example bench-env --example bare-proxy \
  --example gateway-counted --example bare-proxy-counted
bin="$target_dir/$profile/oidc-gateway"
helper="$target_dir/$profile/examples/bench-env"
bare_bin="$target_dir/$profile/examples/bare-proxy"
if [ $allocs = 1 ]; then
  bin="$target_dir/release/examples/gateway-counted"; bare_bin="$target_dir/release/examples/bare-proxy-counted"
fi

up_port=$((port + 1)); ngx_port=$((port + 2)); op_port=$((port + 3)); bare_port=$((port + 4))
admin_port=$((port + 10))
tmp=$(mktemp -d)
pids=()
# --allocs: the bare proxy and the gateway write "allocations bytes" to these every 100 ms.
count_bare=(); count_gw=()
if [ $allocs = 1 ]; then
  count_bare=(env ALLOC_COUNT_FILE="$tmp/allocs.bare"); count_gw=(env ALLOC_COUNT_FILE="$tmp/allocs.gw")
fi
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- nginx: upstream (one worker: the shared backend) and a plain reverse proxy -------------
mkdir -p "$tmp/www" "$tmp/ngx-up" "$tmp/ngx-proxy"
chmod 755 "$tmp" "$tmp/www"   # nginx workers run as nobody when started as root
printf 'hello from the upstream: a small body of about one hundred bytes, like a tiny JSON answer.\n' \
  >"$tmp/www/index.html"
nginx_conf() { # dir workers server-block
  cat >"$1/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi;
  uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  $3
}
EOF
}
nginx_conf "$tmp/ngx-up" 1 "access_log off;
  server { listen 127.0.0.1:$up_port; root $tmp/www;
           location / { try_files /index.html =404; default_type text/plain; } }"
# Same work as the gateway does besides SSO: proxy with pooled upstream connections, log a line.
nginx_conf "$tmp/ngx-proxy" auto "access_log $tmp/ngx-proxy/access.log;
  upstream backend { server 127.0.0.1:$up_port; keepalive 256; }
  server { listen 127.0.0.1:$ngx_port;
           location / { proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection \"\"; } }"
/usr/sbin/nginx -c "$tmp/ngx-up/nginx.conf" -e "$tmp/ngx-up/error.log" &
pids+=($!)
/usr/sbin/nginx -c "$tmp/ngx-proxy/nginx.conf" -e "$tmp/ngx-proxy/error.log" &
ngx_pid=$!
pids+=($!)
# The bare pingora proxy: as many threads as the gateway (its default, one per core).
"${count_bare[@]}" "$bare_bin" --listen "127.0.0.1:$bare_port" --upstream "127.0.0.1:$up_port" --threads "$(nproc)" \
  >"$tmp/bare.log" 2>&1 &
bare_pid=$!
pids+=($!)

# --- development provider (own process) and the gateway under test ----------------------------
secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
public_url="http://localhost:$port"
"$helper" provider --port "$op_port" --redirect-uri "$public_url/oauth2/callback" \
  --client-secret "$secret" >"$tmp/issuer" 2>"$tmp/provider.log" &
pids+=($!)
for _ in $(seq 300); do [ -s "$tmp/issuer" ] && break; sleep 0.1; done
issuer=$(head -1 "$tmp/issuer")
[ -n "$issuer" ] || { echo "the development provider did not start" >&2; cat "$tmp/provider.log" >&2; exit 1; }

cat >"$tmp/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
public_url = "$public_url"

[admin]
listen = "127.0.0.1:$admin_port"

[session]
keys = ["$("$bin" keygen)"]
secure = true
idle_timeout = "30m"
max_lifetime = "8h"

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
EOF
"$bin" check --config "$tmp/gateway.toml" >/dev/null
# Default log level: the access line per request is part of what is measured (nginx logs too).
start_gateway() {
  "${count_gw[@]}" "$bin" run --config "$tmp/gateway.toml" 2>>"$tmp/gateway.log" &
  gw=$!
  pids+=($gw)
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$admin_port/readyz" >/dev/null || { echo "gateway not ready" >&2; tail "$tmp/gateway.log" >&2; exit 1; }
}
start_gateway
for p in $up_port $ngx_port $bare_port; do
  curl -fs "http://127.0.0.1:$p/" >/dev/null || { echo "proxy on $p not answering" >&2; cat "$tmp"/ngx-*/error.log "$tmp/bare.log" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }   # kB

# --- login throughput (--logins) ----------------------------------------------------------------
if [ $logins = 1 ]; then
  hz=$(getconf CLK_TCK)
  "$helper" logins --url "$public_url/app" --concurrency 4 --seconds 2 >/dev/null   # warm-up
  before=$(cpu_ticks $gw)
  # With --perf DIR: a profile of the gateway during the measured logins (logins.perf.data).
  if [ -n "$perf_dir" ]; then
    perf record -q -F 999 -g -p "$gw" -o "$perf_dir/logins.perf.data" -- sleep "$login_seconds" 2>/dev/null &
    rec=$!
  fi
  read -r ok failed secs < <("$helper" logins --url "$public_url/app" --concurrency "$login_conc" --seconds "$login_seconds")
  after=$(cpu_ticks $gw)
  if [ -n "$perf_dir" ]; then
    wait $rec || true
    perf report -i "$perf_dir/logins.perf.data" --no-children --percent-limit 0.7 --stdio -g none \
      --sort dso,symbol 2>/dev/null | grep -v '^#' | grep -v '^$' >"$perf_dir/logins.self.txt" || true
  fi
  {
    echo "### Login throughput ($(date -u +%F), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "Full authorization code flows (protected page → 302 → provider with login_hint → callback:"
    echo "code exchange, ID token validation, UserInfo, session cookie), $login_conc concurrent browsers,"
    echo "development provider (RS256 signing) in its own process on the same 2 cores."
    echo
    echo "| logins | failed | seconds | logins/s | gateway CPU per login |"
    echo "|---|---|---|---|---|"
    awk -v ok="$ok" -v f="$failed" -v s="$secs" -v t=$((after - before)) -v hz="$hz" \
      'BEGIN { printf "| %d | %d | %.1f | %.0f | %.2f ms |\n", ok, f, s, ok / s, (ok > 0 ? t / hz * 1000 / ok : 0) }'
  } | tee "$out"
  exit 0
fi

# --- a real login: the template session cookie --------------------------------------------------
jar="$tmp/jar"
loc=$(curl -s -o /dev/null -w '%{redirect_url}' -H 'Sec-Fetch-Mode: navigate' -c "$jar" -b "$jar" "$public_url/app")
cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$loc&login_hint=alice")
curl -s -o /dev/null -c "$jar" -b "$jar" "$cb"
login_cookie=$(awk '$6 ~ /^oidc_session/ && $6 !~ /_login_/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")
[ -n "$login_cookie" ] || { echo "login failed; gateway log:" >&2; tail "$tmp/gateway.log" >&2; exit 1; }
mint() { # count file
  "$helper" mint --config "$tmp/gateway.toml" --cookie "$login_cookie" --count "$1" --out "$2"
}
mint 1 "$tmp/one"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $(cat "$tmp/one")" -H 'Accept: application/json' "$public_url/app")
[ "$status" = 200 ] || { echo "minted session cookie not accepted ($status)" >&2; exit 1; }
cookie_bytes=$(head -1 "$tmp/one" | wc -c)
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: text/html' "$public_url/app")
[ "$status" = 302 ] || { echo "a browser without a session got $status, not 302" >&2; exit 1; }

# wrk script: each request carries the next cookie of a file (distinct sessions).
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

# run TARGET CONNECTIONS DURATION: prints the parsed line
run() {
  local t=$1 c=$2 d=$3 h=(-H "Accept: application/json") url
  case $t in
    upstream) url="http://127.0.0.1:$up_port/" ;;
    nginx) url="http://127.0.0.1:$ngx_port/" ;;
    bare) url="http://127.0.0.1:$bare_port/" ;;
    public) url="http://127.0.0.1:$port/public/x" ;;
    auth) mint 1 "$tmp/one"; url="http://127.0.0.1:$port/app"; h+=(-H "Cookie: $(cat "$tmp/one")") ;;
    redirect) url="http://127.0.0.1:$port/app"; h=(-H "Accept: text/html,application/xhtml+xml") ;;
  esac
  wrk -t "$threads" -c "$c" -d "$d" --latency -H "Host: localhost:$port" "${h[@]}" "$url" | parse_wrk
}

targets="upstream nginx bare public auth redirect"
declare -A label=([upstream]="nginx upstream, direct" [nginx]="nginx reverse proxy"
  [bare]="bare pingora proxy (same crates)"
  [public]="gateway, public route" [auth]="gateway, authenticated route"
  [redirect]="gateway, unauthenticated browser → 302")
# ticks PID...: user + system CPU of these processes so far, in clock ticks.
ticks() {
  local t=0 p v
  for p in "$@"; do v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || v=0; t=$((t + ${v:-0})); done
  echo $t
}
# The processes that serve a target (nginx: the master and its workers).
serving() {
  case $1 in
    nginx) echo "$ngx_pid $(pgrep -P "$ngx_pid" | tr '\n' ' ')" ;;
    bare) echo "$bare_pid" ;;
    public | auth | redirect) echo "$gw" ;;
  esac
}
hz=$(getconf CLK_TCK)
load_samples=()
sample_load() { load_samples+=("$(cut -d' ' -f1 /proc/loadavg)"); }

# --- profiles (--perf DIR) --------------------------------------------------------------------------
if [ -n "$perf_dir" ]; then
  command -v strace >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
  # System calls per request (strace -c on every thread; strace slows the proxy, the counts
  # per request stay).
  for t in nginx bare public auth; do
    case $t in
      nginx) ps=$(pgrep -P $ngx_pid | tr '\n' ' ') ;;
      bare) ps=$bare_pid ;;
      *) ps=$gw ;;
    esac
    ps_args=(); for p in $ps; do ps_args+=(-p "$p"); done
    strace -c -f -o "$perf_dir/$t.syscalls.txt" "${ps_args[@]}" &
    st=$!
    sleep 0.5
    read -r _ _ _ n _ < <(run "$t" 16 3s)
    kill -INT $st; wait $st 2>/dev/null || true
    echo "requests: $n" >>"$perf_dir/$t.syscalls.txt"
    awk -v n="$n" -v t="$t" '$NF == "total" { printf "== %s: %.2f system calls per request\n", t, $(NF-2) / n }' \
      "$perf_dir/$t.syscalls.txt" >&2
  done
  for t in bare public auth; do
    p=$gw; [ $t = bare ] && p=$bare_pid
    run "$t" 64 2s >/dev/null
    perf record -q -F 999 -g -p "$p" -o "$perf_dir/$t.perf.data" -- sleep "${duration%s}" 2>/dev/null &
    rec=$!
    line=$(run "$t" 64 "$duration")
    wait $rec || true
    echo "== $t: $line (requests/s p50 p99 requests non2xx)" >&2
    perf report -i "$perf_dir/$t.perf.data" --no-children --percent-limit 0.7 --stdio -g none \
      --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' >"$perf_dir/$t.self.txt" || true
    perf report -i "$perf_dir/$t.perf.data" --children --percent-limit 3 --stdio -g none \
      --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' >"$perf_dir/$t.children.txt" || true
  done
  echo "(profiles in $perf_dir: TARGET.perf.data, TARGET.self.txt, TARGET.children.txt)" >&2
  exit 0
fi

# --- allocations per request (--allocs) -----------------------------------------------------------
if [ $allocs = 1 ]; then
  counted() { sleep 0.3; cut -d' ' -f"$2" "$tmp/allocs.$1"; }   # after the writer's next tick
  {
    echo "### Heap allocations per request ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "Counting allocator (stats_alloc over the system allocator) in the bare pingora proxy and the gateway;"
    echo "wrk -c 16 for 5 s per target, after a 2 s warm-up; every allocation of the process divided"
    echo "by the requests answered. Session cookie: $((cookie_bytes - 1)) bytes."
    echo
    echo "| target | requests | allocations per request | bytes allocated per request |"
    echo "|---|---|---|---|"
    for t in bare public auth; do
      p=gw; [ $t = bare ] && p=bare
      run "$t" 16 2s >/dev/null
      a0=$(counted $p 1); b0=$(counted $p 2)
      read -r _ _ _ n _ < <(run "$t" 16 5s)
      a1=$(counted $p 1); b1=$(counted $p 2)
      awk -v l="${label[$t]}" -v n="$n" -v a=$((a1 - a0)) -v b=$((b1 - b0)) \
        'BEGIN { printf "| %s | %d | %.1f | %.0f |\n", l, n, a / n, b / n }'
    done
  } | tee "$out"
  exit 0
fi

if [ $skip_matrix = 0 ]; then
echo "== warm-up" >&2
for t in $targets; do run "$t" 64 2s >/dev/null; done
echo "== $rounds rounds × {${connections}} connections × 6 targets × $duration (wrk -t$threads)" >&2
sample_load
for r in $(seq "$rounds"); do
  for c in $connections; do
    for t in $targets; do
      procs=$(serving "$t"); t0=$(ticks $procs)
      line=$(run "$t" "$c" "$duration")
      # The proxy's CPU per answered request: what it costs, whatever the machine's noise.
      cpu=$(awk -v d=$(($(ticks $procs) - t0)) -v hz="$hz" -v n="$(echo "$line" | cut -d' ' -f4)" -v p="$procs" \
        'BEGIN { if (p != "" && n > 0) printf "%.1f", d / hz * 1e6 / n; else printf "-" }')
      echo "$r $c $t $line $cpu" >>"$tmp/results"
      echo "   round $r, $c conns, $t: $line cpu_us=$cpu" >&2
    done
    sample_load
  done
done
fi
hwm_matrix=$(vm $gw VmHWM)

# --- 10,000 distinct sessions, at least 100,000 requests ----------------------------------------
# In a fresh gateway process, so that its peak RSS is this workload's own (the matrix above
# peaks at 256 connections, which is a different question).
echo "== $sessions distinct sessions (fresh gateway process)" >&2
kill -INT $gw
# Never hang here (a gateway that does not stop is a bug to report, not to wait on).
for _ in $(seq 100); do kill -0 $gw 2>/dev/null || break; sleep 0.1; done
if kill -0 $gw 2>/dev/null; then echo "gateway still running 10 s after SIGINT; killing it" >&2; kill -9 $gw; fi
wait $gw 2>/dev/null || true
start_gateway
mint "$sessions" "$tmp/sessions"
total=0; bad=0
while [ "$total" -lt 100000 ]; do
  read -r _ _ _ n nb < <(wrk -t "$threads" -c 64 -d 15s -H "Host: localhost:$port" \
    -H "Accept: application/json" -s "$tmp/sessions.lua" "http://127.0.0.1:$port/app" -- "$tmp/sessions" | parse_wrk)
  total=$((total + n)); bad=$((bad + nb))
  mint "$sessions" "$tmp/sessions"   # fresh last_seen, as browsers would store the re-seal
done
sample_load
rss_sessions=$(vm $gw VmRSS); hwm_sessions=$(vm $gw VmHWM)

# --- soak: bounded, RSS sampled every 10 s --------------------------------------------------------
soak_rows=""
if [ $soak = 1 ]; then
  echo "== soak: $soak_seconds s of authenticated load over $sessions sessions" >&2
  end=$((SECONDS + soak_seconds)); rss_series=(); soak_n=0; soak_bad=0
  while [ $SECONDS -lt $end ]; do
    left=$((end - SECONDS)); chunk=$((left < 50 ? left : 50))
    [ $chunk -lt 1 ] && break
    wrk -t "$threads" -c 64 -d "${chunk}s" -H "Host: localhost:$port" -H "Accept: application/json" \
      -s "$tmp/sessions.lua" "http://127.0.0.1:$port/app" -- "$tmp/sessions" | parse_wrk >"$tmp/soak.out" &
    w=$!
    while kill -0 $w 2>/dev/null; do rss_series+=("$(vm $gw VmRSS)"); sleep 10; done
    read -r _ _ _ n nb <"$tmp/soak.out"; soak_n=$((soak_n + n)); soak_bad=$((soak_bad + nb))
    mint "$sessions" "$tmp/sessions"
    sample_load
  done
  soak_rows=$(printf '%s\n' "${rss_series[@]}" | awk -v n="$soak_n" -v bad="$soak_bad" -v s="$soak_seconds" '
    { v[NR] = $1 }
    END {
      # Flatness: the first minute is warm-up (pools, caches, allocator arenas fill); its
      # median is the baseline, and no later sample may exceed it by more than 10 %.
      m = 0; for (i = 1; i <= NR; i++) if ((i - 1) * 10 <= 60) w[++m] = v[i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (w[j] < w[i]) { t = w[i]; w[i] = w[j]; w[j] = t }
      base = w[int((m + 1) / 2)]
      max = 0; for (i = 1; i <= NR; i++) if ((i - 1) * 10 > 60 && v[i] > max) max = v[i]
      printf "| soak: %d s, %d requests (%d not 200), RSS first-minute median → max after | %.1f MB → %.1f MB (%+.1f %%, ≤ +10 %%: %s) |\n",
        s, n, bad, base / 1024, max / 1024, (max - base) * 100 / base, (max <= base * 1.1) ? "met" : "MISSED"
      printf "| soak: RSS every 10 s (MB) | "
      for (i = 1; i <= NR; i++) printf "%.1f ", v[i] / 1024
      printf "|\n"
    }')
fi
hwm_final=$(vm $gw VmHWM)

# --- idle keep-alive connections: memory each holds ----------------------------------------------
# idle_kb PID PORT PATH: RSS growth per connection while --idle connections, each after one
# answered request, wait on the proxy (benches/support/idle_conns.py); prints "KB answered".
idle_kb() {
  local pid=$1 p=$2 path=$3 before after ipid
  before=$(vm "$pid" VmRSS)
  python3 benches/support/idle_conns.py "$p" "$idle" "$path" "localhost:$port" >"$tmp/idle.out" 2>&1 &
  ipid=$!
  for _ in $(seq 600); do grep -q '^ready' "$tmp/idle.out" && break; kill -0 $ipid 2>/dev/null || break; sleep 0.1; done
  sleep 1
  after=$(vm "$pid" VmRSS)
  kill $ipid 2>/dev/null; wait $ipid 2>/dev/null || true
  awk -v a="$after" -v b="$before" -v n="$idle" -v r="$(awk '/^ready/ {print $2}' "$tmp/idle.out")" \
    'BEGIN { printf "%.1f %s\n", (a - b) / n, (r == "" ? 0 : r) }'
}
idle_rows=""
if [ "$idle" -gt 0 ]; then
  echo "== $idle idle keep-alive connections" >&2
  read -r kb_bare ok_bare < <(idle_kb $bare_pid $bare_port /)
  sleep 2
  read -r kb_gw ok_gw < <(idle_kb $gw $port /public/x)
  idle_rows="| RSS per idle keep-alive connection ($idle connections, each after one answered request; 200s: bare $ok_bare, gateway $ok_gw): bare pingora / gateway | $kb_bare KB / $kb_gw KB |"
fi

# --- report ---------------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
loads=$(printf '%s ' "${load_samples[@]}")
{
  echo "### Load benchmark, $(date -u '+%F %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $cpu_model; generator wrk $threads thread(s) on the same machine;"
  echo "gateway $(git rev-parse --short HEAD 2>/dev/null || echo '?') with its default $(nproc) worker threads;"
  echo "1-minute load average during the run (sampled): $loads."
  echo "Median of $rounds interleaved rounds of $duration each. Session cookie: $((cookie_bytes - 1)) bytes (alice, CIS2-shaped claims, logout hint)."
  echo "Proxy CPU µs/request: user + system CPU of the proxy's processes (nginx: its master and workers) during the run, divided by the requests answered."
  echo
  if [ $skip_matrix = 0 ]; then
  echo "| target | conns | requests/s | p50 ms | p99 ms | × nginx proxy | × bare pingora | p99 × nginx proxy | errors | proxy CPU µs/request |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  awk -v targets="$targets" -v conns="$connections" -v l_bare="${label[bare]}" \
      -v l_upstream="${label[upstream]}" -v l_nginx="${label[nginx]}" -v l_public="${label[public]}" \
      -v l_auth="${label[auth]}" -v l_redirect="${label[redirect]}" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = $3 SUBSEP $2; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
      # errors: answers with a status of 400 or more (what wrk counts as "Non-2xx or 3xx")
      bad[k] += $8
      if ($9 != "" && $9 != "-") cpu[k] = cpu[k] " " $9 }
    END {
      lab["upstream"] = l_upstream; lab["nginx"] = l_nginx; lab["public"] = l_public
      lab["auth"] = l_auth; lab["redirect"] = l_redirect; lab["bare"] = l_bare
      nt = split(targets, T, " "); nc = split(conns, C, " ")
      for (ci = 1; ci <= nc; ci++) for (ti = 1; ti <= nt; ti++) {
        c = C[ci]; t = T[ti]; k = t SUBSEP c
        r = median(rps[k]); ngx = median(rps["nginx" SUBSEP c]); bare = median(rps["bare" SUBSEP c])
        np99 = median(p99["nginx" SUBSEP c])
        printf "| %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %d | %s |\n", lab[t], c, r, median(p50[k]), median(p99[k]),
          r / ngx, (t == "upstream" || t == "nginx") ? "" : sprintf("%.2f", r / bare),
          (t == "upstream" || t == "nginx") ? "" : sprintf("%.2f", median(p99[k]) / np99), bad[k],
          (k in cpu) ? sprintf("%.1f", median(cpu[k])) : ""
      }
    }' "$tmp/results"
  echo
  fi
  echo "| memory (gateway process) | |"
  echo "|---|---|"
  [ $skip_matrix = 0 ] && echo "| peak RSS (VmHWM) after the matrix above (256 connections included) | $(awk -v k="$hwm_matrix" 'BEGIN {printf "%.1f MB", k / 1024}') |"
  echo "| fresh process, $total requests over $sessions distinct sessions at 64 connections ($bad not 200): RSS / peak | $(awk -v a="$rss_sessions" -v b="$hwm_sessions" 'BEGIN {printf "%.1f MB / %.1f MB", a / 1024, b / 1024}') |"
  [ -n "$soak_rows" ] && echo "$soak_rows"
  echo "| same process, peak RSS (VmHWM) at the end | $(awk -v k="$hwm_final" 'BEGIN {printf "%.1f MB", k / 1024}') |"
  [ -n "$idle_rows" ] && echo "$idle_rows"
  echo
  # Targets of issue 7 (64 connections) and issue 13 (64 and 256), from the medians above.
  [ $skip_matrix = 0 ] && awk -v conns="$connections" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ok(c) { return c ? "met" : "MISSED" }
    { rps[$3, $2] = rps[$3, $2] " " $4; p99[$3, $2] = p99[$3, $2] " " $6 }
    END {
      if (("auth", 64) in rps) {
        a = median(rps["auth", 64]); p = median(rps["public", 64]); n = median(rps["nginx", 64]); rd = median(rps["redirect", 64])
        ap = median(p99["auth", 64]); pp = median(p99["public", 64])
        printf "Issue 7, 64 connections: authenticated/public %.2f (≥ 0.90: %s); redirects/public %.2f (≥ 0.80: %s); p99 authenticated − public %+.2f ms (≤ 1 ms: %s).\n", a / p, ok(a >= 0.9 * p), rd / p, ok(rd >= 0.8 * p), ap - pp, ok(ap - pp <= 1)
        printf "Issue 13, 64 connections: authenticated/nginx proxy %.2f (≥ 0.70: %s).\n", a / n, ok(a >= 0.7 * n)
      }
      nc = split(conns, C, " ")
      for (i = 1; i <= nc; i++) {
        c = C[i]; if (!(("bare", c) in rps)) continue
        b = median(rps["bare", c]); a = median(rps["auth", c]); p = median(rps["public", c])
        ap = median(p99["auth", c]); np = median(p99["nginx", c])
        printf "Issue 13, %d connections: authenticated/bare pingora %.2f (≥ 0.90: %s); public/bare pingora %.2f (≥ 0.95: %s); p99 authenticated/nginx proxy %.2f (≤ 2: %s).\n", c, a / b, ok(a >= 0.9 * b), p / b, ok(p >= 0.95 * b), ap / np, ok(ap <= 2 * np)
      }
    }' "$tmp/results"
  awk -v h="$hwm_sessions" -v r="$rss_sessions" 'BEGIN { printf "After 100,000+ requests over the distinct sessions: RSS %.1f MB (≤ 48 MB, issue 13: %s), peak %.1f MB (< 64 MB, issue 7: %s).\n", r / 1024, (r <= 49152) ? "met" : "MISSED", h / 1024, (h < 65536) ? "met" : "MISSED" }'
} | tee "$out"
echo "(written to $out)" >&2
