#!/usr/bin/env bash
# Runs every test of oidc-gateway, installing what the tests need when it is missing.
# Usage: bash tests/run.sh        (from the repository root; CI runs exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # pingora's zlib-ng build
# The browser test (tests/it/oidc_provider.rs) drives Debian's Chromium with playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)   # tests/it/nginx.rs (auth_request)
# tests/it/redis_store.rs, revocation.rs and redis_ha.rs start their own redis-server processes
# on loopback ports: single servers, a Sentinel group and a six-node Cluster.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
# tests/it/paths.rs puts Debian's Tomcat 10 (started by the test on a loopback port) behind the gateway.
[ -f /usr/share/tomcat10/bin/bootstrap.jar ] || need_apt+=(tomcat10)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# tests/check-vendor.sh reverse-applies vendor/pingora-proxy.patch.
command -v patch >/dev/null 2>&1 || need_apt+=(patch)
# tests/it/systemd.rs checks the unit with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# tests/it/cli.rs renders `oidc-gateway man` with man(1).
command -v man >/dev/null 2>&1 || need_apt+=(man-db)
# tests/it/monitoring.rs checks contrib/ with promtool and a Prometheus server of its own.
# (without its recommends: node-exporter would start a service on a machine that runs systemd).
need_apt_alone=()
command -v promtool >/dev/null 2>&1 || need_apt_alone+=(prometheus)
# tests/package.sh: the Debian package, checked with lintian and installed with dpkg --root.
command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ${#need_apt_alone[@]} -gt 0 ]; then
  echo "== installing ${need_apt_alone[*]} (no recommends)"
  export DEBIAN_FRONTEND=noninteractive
  [ ${#need_apt[@]} -gt 0 ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt_alone[@]}" >/dev/null
fi
# packaging/build-deb.sh builds the package with cargo-deb.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== cargo install cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi
# The certified OpenID Provider (oidc-provider) and playwright-core, from the lock file.
if [ ! -d tests/interop/op/node_modules ]; then
  echo "== npm ci in tests/interop/op"
  (cd tests/interop/op && npm ci --no-audit --no-fund)
fi

echo "== vendor/: pingora-proxy, pingora-core and pingora-http 0.9.1 plus their patches"
bash tests/check-vendor.sh

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (default features, and the build without the demo)"
cargo clippy --workspace --all-targets -- -D warnings 2>&1
cargo clippy --no-default-features --lib --bins -- -D warnings 2>&1

echo "== cargo test"
cargo test --workspace --all-targets 2>&1
# The vendored pingora-http carries its own tests of the patched header case (vendor/README.md).
cargo test -p pingora-http --lib 2>&1

echo "== fuzzing: every target in fuzz/ for 30s, two at a time (fuzz/run.sh)"
bash fuzz/run.sh 30

echo "== oidc-gateway check on every example config"
export CIS2_CLIENT_ID=example-client
bin="${CARGO_TARGET_DIR:-target}/debug/oidc-gateway"   # where cargo test built it
keydir=$(mktemp -d)
trap 'rm -rf "$keydir"' EXIT
"$bin" keygen --jwk --alg RS256 --out "$keydir/rp.pem" >/dev/null 2>&1
export OIDC_GATEWAY_PRIVATE_KEY_FILE="$keydir/rp.pem"
export GATEWAY_COOKIE_KEY="$("$bin" keygen)"
export OIDC_CLIENT_SECRET=example-secret
failed=0
for f in config/*.toml; do
  [ "$(basename "$f")" = demo.toml ] && continue
  if ! "$bin" check --config "$f"; then failed=1; fi
done
if [ $failed -ne 0 ]; then
  echo "1 passed, 1 failed: an example config does not pass oidc-gateway check"
  exit 1
fi

echo "== the Debian package (tests/package.sh)"
bash tests/package.sh
