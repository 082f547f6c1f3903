#!/usr/bin/env bash
# Builds every fuzz target (cargo-fuzz, libFuzzer), replays the inputs that crashed before
# (fuzz/regressions/<target>/), then fuzzes each target for SECONDS, two at a time.
# Stops at the first crash, timeout or invariant failure with a non-zero exit.
#
# Usage: bash fuzz/run.sh [SECONDS]          (default 30; from anywhere in the repository)
# Environment:
#   FUZZ_JOBS=N        targets fuzzed at once (default 2)
#   FUZZ_TARGETS="a b" only these targets (default: every one in fuzz/Cargo.toml)
#   FUZZ_FRESH=1       forget the corpus earlier runs grew (fuzz/scratch/)
#   FUZZ_NICE=N        run the fuzzers under nice -n N (default 0)
# New corpus entries go to fuzz/scratch/<target>/ (not committed); fuzz/corpus/<target>/ holds
# the committed seeds and is only read. A crashing input lands in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
jobs="${FUZZ_JOBS:-2}"
nice_level="${FUZZ_NICE:-0}"
case "$seconds" in '' | *[!0-9]*) echo "usage: bash fuzz/run.sh [SECONDS]" >&2; exit 2 ;; esac

# A nightly toolchain when there is one; else the stable compiler with its nightly switches.
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

targets=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  while IFS= read -r t; do targets+=("$t"); done < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

# Release build (cargo fuzz's default, -O), debug assertions and overflow checks on (-a). No
# sanitizer: the gateway forbids unsafe code, and ASan would double the build and halve the
# executions (`-s address` for a deeper look at the dependencies' unsafe code).
echo "== cargo fuzz build (${#targets[@]} targets)"
build_start=$SECONDS
"${fuzz[@]}" build --fuzz-dir fuzz -O -a -s none 2>&1 | grep -v '^\s*Compiling ' || {
  echo "fuzz build failed" >&2
  exit 1
}
echo "   built in $((SECONDS - build_start))s"
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="fuzz/target/$host/release"

# Earlier crashes must stay fixed: each input runs once.
for t in "${targets[@]}"; do
  dir="fuzz/regressions/$t"
  [ -d "$dir" ] || continue
  inputs=("$dir"/*)
  [ -e "${inputs[0]}" ] || continue
  if ! "$bin_dir/$t" "${inputs[@]}" >"/tmp/fuzz-regress-$t.log" 2>&1; then
    echo "FAILED: a regression input of $t crashes again; log: /tmp/fuzz-regress-$t.log" >&2
    tail -30 "/tmp/fuzz-regress-$t.log" >&2
    exit 1
  fi
  echo "   $t: ${#inputs[@]} regression inputs pass"
done

[ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf fuzz/scratch
logs=$(mktemp -d)
declare -A target_of=() # running fuzzers: pid -> target
cleanup() {
  for p in "${!target_of[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup EXIT

run_one() {
  local t=$1 dict=()
  mkdir -p "fuzz/scratch/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  exec nice -n "$nice_level" "$bin_dir/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "${dict[@]}" \
    "fuzz/scratch/$t" "fuzz/corpus/$t" >"$logs/$t.log" 2>&1
}

# One line per target: executions, edge coverage, features, corpus size.
report() {
  local t=$1 status=$2 log="$logs/$1.log"
  local execs cov ft corp
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  printf '   %-18s %-6s %6ss  execs %-9s cov %-6s ft %-7s corpus %s\n' \
    "$t" "$status" "$seconds" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

echo "== fuzzing ${#targets[@]} targets for ${seconds}s each, $jobs at a time"
fuzz_start=$SECONDS
queue=("${targets[@]}")
failed=""
while :; do
  while [ -z "$failed" ] && [ ${#queue[@]} -gt 0 ] && [ ${#target_of[@]} -lt "$jobs" ]; do
    t=${queue[0]}
    queue=("${queue[@]:1}")
    run_one "$t" &
    target_of[$!]=$t
  done
  [ ${#target_of[@]} -gt 0 ] || break
  rc=0
  wait -n -p done_pid "${!target_of[@]}" || rc=$?
  t=${target_of[$done_pid]}
  unset "target_of[$done_pid]"
  if [ -n "$failed" ]; then
    continue # stopped after the first failure
  elif [ $rc -eq 0 ]; then
    report "$t" ok
  else
    report "$t" FAILED
    failed="$t"
    echo "FAILED: $t exited with $rc; the input is in fuzz/artifacts/$t/" >&2
    grep -v '^#\|^INFO\|^Done\|^stat::' "$logs/$t.log" | tail -40 >&2
    # The first failure ends the run: stop the others.
    for p in "${!target_of[@]}"; do kill "$p" 2>/dev/null || true; done
  fi
done
echo "   fuzzed in $((SECONDS - fuzz_start))s"
if [ -n "$failed" ]; then
  echo "1 failed: fuzz target $failed (reproduce: fuzz/target/$host/release/$failed fuzz/artifacts/$failed/<file>)" >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz targets passed"
