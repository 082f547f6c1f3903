#!/usr/bin/env bash
# The Debian package as an operator meets it, installed into a throwaway root (never into this
# machine's own /etc or services): build it with packaging/build-deb.sh, check it with lintian,
# install it with dpkg --root, look at what it put where and with which modes, check that the
# installed config passes the installed binary's `check` once the credentials exist, that nothing
# started or enabled the service, that an edited conffile survives a reinstall, and that purge
# takes everything away.
#
# Usage: bash tests/package.sh      (tests/run.sh runs it; needs root, dpkg, lintian, cargo-deb)
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
fail() { failed=$((failed + 1)); echo "  FAILED: $*"; }
check() { # description, command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

target=${CARGO_TARGET_DIR:-target}
echo "== packaging/build-deb.sh"
rm -rf "$target/debian"
bash packaging/build-deb.sh
deb=$(ls "$target"/debian/oidc-gateway_*.deb)
echo "   $deb ($(du -h "$deb" | cut -f1))"

root=$(mktemp -d /tmp/oidc-gateway-pkg.XXXXXX)
bin_dir=$(mktemp -d /tmp/oidc-gateway-pkg-bin.XXXXXX)
host_etc_before=$(ls -d /etc/oidc-gateway 2>/dev/null || true)
trap 'rm -rf "$root" "$bin_dir"' EXIT

echo "== lintian"
lintian_out=$(lintian --fail-on error --display-level ">=warning" "$deb" 2>&1) && lintian_rc=0 || lintian_rc=$?
[ -n "$lintian_out" ] && echo "$lintian_out" | sed 's/^/   /'
check "lintian reports no errors" [ "$lintian_rc" -eq 0 ]
check "lintian reports no warnings either" [ -z "$(echo "$lintian_out" | grep '^W:' || true)" ]

echo "== dpkg --root $root -i"
# An empty dpkg database of its own. Scripts run on this machine with DPKG_ROOT set
# (--force-script-chrootless): deb-systemd-helper (which honours DPKG_ROOT) is the real one and
# keeps its state under the root; systemctl, deb-systemd-invoke and invoke-rc.d only record their
# calls, so that nothing reaches this machine's services and the test sees what was asked.
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/log"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
for tool in systemctl deb-systemd-invoke invoke-rc.d; do
  printf '#!/bin/sh\necho "%s $*" >> %s/calls\n' "$tool" "$bin_dir" > "$bin_dir/$tool"
  chmod +x "$bin_dir/$tool"
done
dpkg_root() {
  PATH="$bin_dir:$PATH" dpkg --root="$root" --log=/dev/null --force-script-chrootless \
    --force-depends --no-triggers "$@"
}
dpkg_root -i "$deb" > "$root/install.log" 2>&1 || { cat "$root/install.log"; exit 1; }
sed 's/^/   /' "$root/install.log"

mode_of() { stat -c '%a %U:%G' "$root$1"; }
expect_mode() { # path, "mode owner:group"
  local got
  got=$(mode_of "$1" 2>/dev/null || echo missing)
  check "$1 is $2 (got $got)" [ "$got" = "$2" ]
}
expect_mode /usr/bin/oidc-gateway "755 root:root"
expect_mode /usr/lib/systemd/system/oidc-gateway.service "644 root:root"
expect_mode /etc/oidc-gateway "755 root:root"
expect_mode /etc/oidc-gateway/gateway.toml "644 root:root"
expect_mode /etc/oidc-gateway/cookie-key "600 root:root"
expect_mode /usr/share/man/man1/oidc-gateway.1.gz "644 root:root"
expect_mode /usr/share/bash-completion/completions/oidc-gateway "644 root:root"
expect_mode /usr/share/zsh/vendor-completions/_oidc-gateway "644 root:root"
expect_mode /usr/share/fish/vendor_completions.d/oidc-gateway.fish "644 root:root"
expect_mode /usr/share/oidc-gateway/config.schema.json "644 root:root"
expect_mode /usr/share/oidc-gateway/grafana/oidc-gateway.json "644 root:root"
expect_mode /usr/share/oidc-gateway/prometheus/alerts.yml "644 root:root"
expect_mode /usr/share/doc/oidc-gateway/copyright "644 root:root"
expect_mode /usr/share/doc/oidc-gateway/install.md "644 root:root"

installed="$root/usr/bin/oidc-gateway"
unit="$root/usr/lib/systemd/system/oidc-gateway.service"
conf="$root/etc/oidc-gateway/gateway.toml"
check "the packaged binary runs and has no demo provider" \
  sh -c "'$installed' --version >/dev/null && timeout 10 '$installed' demo 2>&1 | grep -q 'built without the .demo. feature'"
check "the unit runs /usr/bin/oidc-gateway (check first, then run)" \
  sh -c "grep -qx 'ExecStartPre=/usr/bin/oidc-gateway check --config /etc/oidc-gateway/gateway.toml' '$unit' &&
         grep -qx 'ExecStart=/usr/bin/oidc-gateway run --config /etc/oidc-gateway/gateway.toml' '$unit' &&
         ! grep -q /usr/local '$unit'"
check "the unit is the hardened one from systemd/" \
  sh -c "grep -qx 'DynamicUser=yes' '$unit' && grep -qx 'ProtectSystem=strict' '$unit'"
check "gateway.toml is a conffile" \
  sh -c "dpkg-query --admindir='$root/var/lib/dpkg' -W -f='\${Conffiles}' oidc-gateway | grep -q ' /etc/oidc-gateway/gateway.toml '"
check "the cookie key is a fresh base64 32-byte key" \
  sh -c "[ \"\$(base64 -d '$root/etc/oidc-gateway/cookie-key' | wc -c)\" = 32 ]"
check "the man page renders" sh -c "MANWIDTH=80 man -l '$root/usr/share/man/man1/oidc-gateway.1.gz' | grep -q 'oidc-gateway check'"
check "bash completion loads and completes commands" \
  bash -c "source '$root/usr/share/bash-completion/completions/oidc-gateway' &&
           COMP_WORDS=(oidc-gateway ch) COMP_CWORD=1 && _oidc__gateway oidc-gateway ch oidc-gateway &&
           [ \"\${COMPREPLY[*]}\" = check ]"
check "the conffile and the installed examples name the installed schema" \
  sh -c "head -qn1 '$conf' '$root'/usr/share/doc/oidc-gateway/examples/*.example.toml |
         grep -vx '#:schema /usr/share/oidc-gateway/config.schema.json' | wc -l | grep -qx 0"
check "the unit's install notes are the package's" \
  sh -c "grep -q 'installed by the oidc-gateway package' '$unit' && ! grep -q 'install -m 0755 target' '$unit'"

# The service's view: the credentials systemd would hand it. Without the client secret, `check`
# (the unit's ExecStartPre=) refuses to start; with it, the installed config passes.
creds=$(mktemp -d "$root/creds.XXXXXX")
cp "$root/etc/oidc-gateway/cookie-key" "$creds/cookie-key"
check "without a client secret the unit's check refuses the config" \
  sh -c "! CREDENTIALS_DIRECTORY='$creds' '$installed' check --config '$conf' >/dev/null 2>&1"
echo "example-secret" > "$creds/client-secret"
check "with the credentials in place the installed config passes check" \
  sh -c "CREDENTIALS_DIRECTORY='$creds' '$installed' check --config '$conf'"
check "the package neither started nor enabled the service" \
  sh -c "! grep -Eq '(start|enable|restart)( |$)' '$bin_dir/calls' 2>/dev/null &&
         [ ! -e '$root/etc/systemd/system/multi-user.target.wants/oidc-gateway.service' ]"
check "the unit is registered with deb-systemd-helper (so purge can clean up after it)" \
  [ -e "$root/var/lib/systemd/deb-systemd-helper-enabled/oidc-gateway.service.dsh-also" ]
check "this machine's own /etc was not touched" [ "$(ls -d /etc/oidc-gateway 2>/dev/null || true)" = "$host_etc_before" ]

echo "== reinstall with an edited conffile"
echo "# edited by the operator" >> "$conf"
key_before=$(cat "$root/etc/oidc-gateway/cookie-key")
dpkg_root -i "$deb" > "$root/reinstall.log" 2>&1 || { cat "$root/reinstall.log"; exit 1; }
check "the operator's edit of gateway.toml survives" grep -q "edited by the operator" "$conf"
check "the cookie key is kept (sessions survive upgrades)" [ "$(cat "$root/etc/oidc-gateway/cookie-key")" = "$key_before" ]

echo "== the operator enables the service, then purges the package"
systemctl --root="$root" enable oidc-gateway.service 2>&1 | sed "s/^/   /"
wants="$root/etc/systemd/system/multi-user.target.wants/oidc-gateway.service"
check "enabling made its symlink" [ -L "$wants" ]
dpkg_root --purge oidc-gateway > "$root/purge.log" 2>&1 || { cat "$root/purge.log"; exit 1; }
check "purge removes the binary, the unit, the enable symlink and /etc/oidc-gateway" \
  sh -c "[ ! -e '$root/usr/bin/oidc-gateway' ] && [ ! -e '$unit' ] && [ ! -L '$wants' ] &&
         [ ! -e '$root/etc/oidc-gateway' ] && [ ! -e '$root/var/lib/oidc-gateway' ]"

echo "== purge keeps a cookie key the operator put in place of the generated one"
dpkg_root -i "$deb" > "$root/install2.log" 2>&1 || { cat "$root/install2.log"; exit 1; }
shared_key=$("$root/usr/bin/oidc-gateway" keygen)
echo "$shared_key" > "$root/etc/oidc-gateway/cookie-key"
dpkg_root --purge oidc-gateway > "$root/purge2.log" 2>&1 || { cat "$root/purge2.log"; exit 1; }
check "the replaced key is still there after purge" \
  sh -c "[ \"\$(cat '$root/etc/oidc-gateway/cookie-key')\" = '$shared_key' ]"
check "and the package's own files are gone" \
  sh -c "[ ! -e '$root/etc/oidc-gateway/gateway.toml' ] && [ ! -e '$root/usr/bin/oidc-gateway' ]"

echo "$passed passed, $failed failed (tests/package.sh)"
[ "$failed" -eq 0 ]
