#!/usr/bin/env bash
# Proves that each vendored pingora crate (vendor/<crate>) is the released crate from crates.io,
# minus the files listed in vendor/<crate>.exclude, plus vendor/<crate>.patch; nothing else.
# The vendored crates: pingora-proxy, pingora-core and pingora-http, all 0.9.1. See vendor/README.md.
#
# Usage (from anywhere; needs bash, coreutils, find, and GNU patch or git; never cargo):
#   bash tests/check-vendor.sh              offline (CI): copies the vendored crate to a temp dir,
#                                           reverse-applies the patch and checks the result against
#                                           vendor/<crate>-0.9.1.sha256, file by file, with
#                                           no missing and no extra files.
#   bash tests/check-vendor.sh --upstream [CRATE_FILE]
#                                           also verifies the manifest itself: takes the .crate
#                                           (CRATE_FILE, else the cargo registry cache, else a
#                                           download from static.crates.io), checks it against the
#                                           crates.io checksum pinned below, regenerates the
#                                           manifest and compares, applies the patch to the
#                                           pristine sources and compares with the vendored copy.
#   bash tests/check-vendor.sh --regenerate [CRATE_FILE]
#                                           rewrites the manifest and the patch from the verified
#                                           crate and the current vendored copy (for re-vendoring
#                                           or changing the patch); review with `git diff vendor/`.
#   --crate NAME first: only that crate (needed with CRATE_FILE); otherwise every vendored crate.
set -euo pipefail

# Each vendored crate with its "cksum" in the crates.io index (https://index.crates.io/pi/ng/NAME),
# i.e. the sha256 of the .crate file; Cargo.lock carried the same value for the registry crate.
CRATE_VERSION=0.9.1
crate_sha256() {
  case "$1" in
    pingora-proxy) echo 8e3d5670490740405ecc8c6f75c3fcbce4d24f7adaffb355ca44550e7918e358 ;;
    pingora-core) echo a535f47f65fdcb003f9e1df04cd18e614c128dfe9388acce3f211ae38ac14d68 ;;
    pingora-http) echo 3f38e9e519d53fab09eb320f7be2cd27ef9e66f755eba3bd84cc68852108d841 ;;
    *) return 1 ;;
  esac
}
VENDORED_CRATES="pingora-proxy pingora-core pingora-http"

if [ "${1:-}" = --crate ]; then
  CRATE_NAME=${2:-}
  crate_sha256 "$CRATE_NAME" >/dev/null || { echo "check-vendor: unknown crate '$CRATE_NAME' (known: $VENDORED_CRATES)" >&2; exit 2; }
  shift 2
else
  case "${1:-}" in -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
  [ -z "${2:-}" ] || { echo "check-vendor: a CRATE_FILE needs --crate NAME first" >&2; exit 2; }
  for c in $VENDORED_CRATES; do bash "${BASH_SOURCE[0]}" --crate "$c" "$@" || exit 1; done
  exit 0
fi
CRATE_SHA256=$(crate_sha256 "$CRATE_NAME")
CRATE_URL="https://static.crates.io/crates/$CRATE_NAME/$CRATE_NAME-$CRATE_VERSION.crate"
INDEX_URL="https://index.crates.io/pi/ng/$CRATE_NAME"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vendor_rel=vendor/$CRATE_NAME
patch_rel=vendor/$CRATE_NAME.patch
exclude_rel=vendor/$CRATE_NAME.exclude
manifest_rel=vendor/$CRATE_NAME-$CRATE_VERSION.sha256
vendor_dir=$root/$vendor_rel
patch_file=$root/$patch_rel
exclude_file=$root/$exclude_rel
manifest=$root/$manifest_rel

me="check-vendor ($CRATE_NAME)"
fail() {
  echo "$me: FAILED: $*" >&2
  exit 1
}
note() { echo "$me: $*"; }

mode=check
crate_arg=
case "${1:-}" in
  "") ;;
  --upstream) mode=upstream; crate_arg=${2:-} ;;
  --regenerate) mode=regenerate; crate_arg=${2:-} ;;
  *) fail "unknown argument '$1' (expected nothing, --upstream [CRATE_FILE] or --regenerate [CRATE_FILE])" ;;
esac

for tool in sha256sum find sort comm cp mktemp; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not installed"
done
if [ "$mode" != check ]; then
  for tool in tar gzip diff awk; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not installed (needed by --$mode)"
  done
fi
if command -v patch >/dev/null 2>&1; then
  applier=patch
elif command -v git >/dev/null 2>&1; then
  applier=git
else
  fail "neither GNU 'patch' nor 'git' is installed (one is needed to apply $patch_rel)"
fi

[ -d "$vendor_dir" ] || fail "$vendor_rel is missing"
[ -f "$exclude_file" ] || fail "$exclude_rel is missing"
if [ "$mode" != regenerate ]; then
  [ -f "$patch_file" ] || fail "$patch_rel is missing"
  [ -f "$manifest" ] || fail "$manifest_rel is missing"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-vendor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Paths listed in the exclude file (comments and blank lines dropped), sorted.
excluded_paths() {
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' "$exclude_file" | grep -v '^$' | LC_ALL=C sort -u || true
}

# Regular files below directory $1, as paths relative to it, sorted.
list_files() {
  (cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
}

# Anything below $1 that is neither a regular file nor a directory (symlinks, ...).
check_only_regular_files() {
  local odd
  odd=$(cd "$1" && find . ! -type f ! -type d | sed 's|^\./||' | LC_ALL=C sort)
  [ -z "$odd" ] || fail "$2 contains entries that are not regular files:"$'\n'"$(echo "$odd" | sed 's/^/    /')"
}

# Applies $patch_file inside directory $1; $2 is "forward" or "reverse"; $3 "check" only tests
# whether it would apply. Prints the tool's output (indented) on failure unless $3 is "check".
apply_patch() {
  local dir=$1 direction=$2 dry=${3:-} out
  local -a args=()
  [ "$direction" = reverse ] && args+=(-R)
  if [ "$applier" = patch ]; then
    [ "$dry" = check ] && args+=(--dry-run)
    # -f: never ask, never guess "reversed"; --fuzz=0: context must match exactly;
    # no .orig/.rej files, so that they cannot show up as extra files.
    out=$(cd "$dir" && patch "${args[@]}" -p1 -f --fuzz=0 --no-backup-if-mismatch \
      --reject-file=- -i "$patch_file" 2>&1) && return 0
  else
    [ "$dry" = check ] && args+=(--check)
    # Outside any repository (GIT_CEILING_DIRECTORIES) git apply works like patch -p1.
    out=$(cd "$dir" && GIT_CEILING_DIRECTORIES=$(dirname "$dir") \
      git apply "${args[@]}" -p1 --whitespace=nowarn "$patch_file" 2>&1) && return 0
  fi
  [ "$dry" = check ] || echo "$out" | sed "s/^/  $applier: /" >&2
  return 1
}

# Files the patch touches (from its +++ headers), for messages.
patched_files() {
  sed -n 's|^+++ [^/]*/\([^[:space:]]*\).*|\1|p' "$patch_file" | LC_ALL=C sort -u
}

# --- offline check ------------------------------------------------------------------------------
offline_check() {
  local copy=$tmp/vendored manifest_files actual extra missing bad
  check_only_regular_files "$vendor_dir" "$vendor_rel"
  cp -R "$vendor_dir" "$copy"

  if ! apply_patch "$copy" reverse; then
    cp -R "$vendor_dir" "$tmp/probe"   # $copy may be half reversed now
    if apply_patch "$tmp/probe" forward check; then
      fail "$vendor_rel does not carry the changes of $patch_rel: the whole patch applies to
  it forward, so the vendored copy is (back to) the unpatched release. Restore the patched files
  ('git checkout -- $vendor_rel'), or drop the vendored crate as described in vendor/README.md."
    fi
    fail "$patch_rel does not reverse-apply to $vendor_rel ($applier -R -p1, no fuzz).
  Lines that the patch changes (see the failing hunk above) were edited without updating the
  patch, or the patch was edited by hand. If the change is intended, run
  'bash tests/check-vendor.sh --regenerate' and review 'git diff vendor/'."
  fi

  manifest_files=$(sed 's/^[0-9a-f]\{64\}  //' "$manifest" | LC_ALL=C sort)
  actual=$(list_files "$copy")
  extra=$(LC_ALL=C comm -13 <(echo "$manifest_files") <(echo "$actual"))
  missing=$(LC_ALL=C comm -23 <(echo "$manifest_files") <(echo "$actual"))
  if [ -n "$extra" ]; then
    fail "$vendor_rel has files that are not in the released crate ($manifest_rel) and not created
  by $patch_rel:"$'\n'"$(echo "$extra" | sed 's/^/    /')
  Remove them, or add them to the patch with 'bash tests/check-vendor.sh --regenerate'.
  If $manifest_rel itself was edited, 'bash tests/check-vendor.sh --upstream' shows how."
  fi
  if [ -n "$missing" ]; then
    fail "$vendor_rel lacks files of the released crate listed in $manifest_rel:"$'\n'"$(echo "$missing" | sed 's/^/    /')
  Restore them, or list them in $exclude_rel and run 'bash tests/check-vendor.sh --regenerate'."
  fi

  if ! bad=$(cd "$copy" && LC_ALL=C sha256sum --check --strict --quiet "$manifest" 2>&1); then
    fail "after reverse-applying $patch_rel, these files of $vendor_rel differ from the released
  $CRATE_NAME $CRATE_VERSION ($manifest_rel):"$'\n'"$(echo "$bad" | sed 's/^/    /')
  Something outside the patch was changed. Revert it ('git checkout -- $vendor_rel'), or, if
  the change is intended, run 'bash tests/check-vendor.sh --regenerate' and review the patch.
  If $manifest_rel itself was edited, 'bash tests/check-vendor.sh --upstream' shows how."
  fi

  note "OK: $vendor_rel = $CRATE_NAME $CRATE_VERSION ($(echo "$manifest_files" | wc -l) files per $manifest_rel)" \
    "minus $(excluded_paths | wc -l) excluded files plus $patch_rel ($(patched_files | tr '\n' ' ' | sed 's/ $//'))"
}

# --- the released crate ------------------------------------------------------------------------
# Finds or downloads the .crate, verifies it and unpacks it; sets $upstream to the crate root.
upstream=
fetch_upstream() {
  [ -z "$upstream" ] || return 0   # already done (--regenerate runs the --upstream check after)
  local crate=$crate_arg cached got index_line index_sum
  local cargo_home=${CARGO_HOME:-$HOME/.cargo}
  if [ -z "$crate" ]; then
    for cached in "$cargo_home"/registry/cache/*/"$CRATE_NAME-$CRATE_VERSION.crate"; do
      [ -f "$cached" ] && { crate=$cached; note "using the cargo cache: $crate"; break; }
    done
  fi
  if [ -z "$crate" ]; then
    crate=$tmp/$CRATE_NAME-$CRATE_VERSION.crate
    note "downloading $CRATE_URL"
    if command -v curl >/dev/null 2>&1; then
      curl -fsSL --retry 3 -o "$crate" "$CRATE_URL" ||
        fail "could not download $CRATE_URL; pass a copy of the .crate: --$mode CRATE_FILE"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -O "$crate" "$CRATE_URL" ||
        fail "could not download $CRATE_URL; pass a copy of the .crate: --$mode CRATE_FILE"
    else
      fail "neither curl nor wget is installed; pass the .crate file: --$mode CRATE_FILE"
    fi
    # Cross-check the pinned checksum against the crates.io index while online (not fatal when
    # the index cannot be reached; the pinned value is what the crate is verified against).
    if command -v curl >/dev/null 2>&1 && index_line=$(curl -fsSL --retry 2 "$INDEX_URL" 2>/dev/null |
      grep -E "\"vers\": *\"${CRATE_VERSION//./\\.}\""); then
      index_sum=$(echo "$index_line" | sed -n 's/.*"cksum": *"\([0-9a-f]\{64\}\)".*/\1/p')
      [ "$index_sum" = "$CRATE_SHA256" ] ||
        fail "the crates.io index ($INDEX_URL) gives cksum '$index_sum' for $CRATE_VERSION, but this script pins $CRATE_SHA256"
      note "crates.io index cksum for $CRATE_VERSION matches the pinned checksum"
    else
      note "warning: could not read $INDEX_URL; verifying against the pinned checksum only"
    fi
  fi
  [ -f "$crate" ] || fail "crate file '$crate' does not exist"
  got=$(sha256sum "$crate" | cut -d' ' -f1)
  [ "$got" = "$CRATE_SHA256" ] ||
    fail "sha256 of $crate is $got, expected $CRATE_SHA256 (crates.io cksum of $CRATE_NAME $CRATE_VERSION)"
  note "$(basename "$crate"): sha256 $got matches the pinned crates.io checksum"

  mkdir "$tmp/upstream"
  tar -xzf "$crate" -C "$tmp/upstream" || fail "could not unpack $crate"
  upstream=$tmp/upstream/$CRATE_NAME-$CRATE_VERSION
  [ -d "$upstream" ] || fail "$crate does not contain $CRATE_NAME-$CRATE_VERSION/"
  [ "$(ls -A "$tmp/upstream")" = "$CRATE_NAME-$CRATE_VERSION" ] ||
    fail "$crate has entries outside $CRATE_NAME-$CRATE_VERSION/"
  check_only_regular_files "$upstream" "the released crate"

  # Every exclude entry must name a file of the crate (catches typos and stale entries).
  local stale
  stale=$(LC_ALL=C comm -23 <(excluded_paths) <(list_files "$upstream"))
  [ -z "$stale" ] || fail "$exclude_rel lists paths that are not files of the released crate:"$'\n'"$(echo "$stale" | sed 's/^/    /')"
}

# sha256 manifest of the released crate's files that are not excluded (sha256sum format, sorted).
upstream_manifest() {
  (cd "$upstream" && LC_ALL=C comm -23 <(list_files .) <(excluded_paths) |
    while IFS= read -r f; do sha256sum -- "$f"; done)
}

# The released crate's files that are not excluded, copied to $1.
upstream_vendorable_copy() {
  local dest=$1 f
  mkdir -p "$dest"
  (cd "$upstream" && LC_ALL=C comm -23 <(list_files .) <(excluded_paths)) | while IFS= read -r f; do
    mkdir -p "$dest/$(dirname "$f")"
    cp "$upstream/$f" "$dest/$f"
  done
}

upstream_check() {
  local d
  fetch_upstream
  if ! d=$(diff -u --label "$manifest_rel (committed)" --label "regenerated from the verified crate" \
    "$manifest" <(upstream_manifest)); then
    fail "$manifest_rel does not match the released crate minus $exclude_rel:"$'\n'"$d"
  fi
  note "OK: $manifest_rel matches the verified crate minus $exclude_rel"

  # Direct proof, independent of the manifest: pristine sources + patch == vendored copy.
  upstream_vendorable_copy "$tmp/forward"
  apply_patch "$tmp/forward" forward ||
    fail "$patch_rel does not apply to the released $CRATE_NAME $CRATE_VERSION sources"
  if ! d=$(diff -r "$tmp/forward" "$vendor_dir"); then
    fail "released sources + $patch_rel differ from $vendor_rel:"$'\n'"$d"
  fi
  note "OK: released sources minus excluded files plus $patch_rel are identical to $vendor_rel"
}

regenerate() {
  local rc=0
  fetch_upstream
  upstream_manifest >"$manifest"
  note "wrote $manifest_rel ($(wc -l <"$manifest") files)"
  upstream_vendorable_copy "$tmp/a"
  cp -R "$vendor_dir" "$tmp/b"
  (cd "$tmp" && LC_ALL=C TZ=UTC0 diff -ruN a b >"$tmp/raw.diff") || rc=$?
  [ "$rc" -le 1 ] || fail "diff failed while generating $patch_rel"
  {
    echo "oidc-gateway changes to $CRATE_NAME $CRATE_VERSION (crates.io), see vendor/README.md."
    echo "Apply inside the unpacked crate with 'patch -p1'. The files listed in $exclude_rel"
    echo "are not vendored. Generated by 'bash tests/check-vendor.sh --regenerate'."
    echo
    # Timestamps dropped from the ---/+++ headers so the patch is reproducible; a file the patch
    # creates (diff -N dates its missing side 1970, in UTC) comes from /dev/null, so that reverse-applying
    # the patch removes it again.
    awk '
      /^diff / { hdr = 2; print; next }
      hdr > 0 && /^--- .*\t1970-01-01 / { print "--- /dev/null"; hdr--; next }
      hdr > 0 && /^(---|\+\+\+) / { sub(/\t.*/, ""); hdr--; print; next }
      { hdr = 0; print }
    ' "$tmp/raw.diff"
  } >"$patch_file"
  note "wrote $patch_rel ($(wc -l <"$patch_file") lines, files: $(patched_files | tr '\n' ' ' | sed 's/ $//'))"
}

case "$mode" in
  check) offline_check ;;
  upstream) upstream_check; offline_check ;;
  regenerate) regenerate; upstream_check; offline_check ;;
esac
