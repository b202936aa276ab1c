#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of sessionkit's parsers and decoders
# (cargo-fuzz / libFuzzer, on the stable toolchain through RUSTC_BOOTSTRAP).
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECONDS=10 scripts/fuzz.sh session_id payload
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler (libFuzzer
# is built from source by libfuzzer-sys). Starts from the seeds in
# fuzz/seeds/<target>; the growing corpus and any crash artifact go under
# $CARGO_TARGET_DIR (default target/fuzz), never into the repository.
# Exits non-zero if any target crashes (panic, failed assertion, overflow:
# debug assertions are on) or cannot be built.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target/fuzz}"
# cargo-fuzz passes -Z flags to rustc; the stable toolchain accepts them
# only with RUSTC_BOOTSTRAP (no nightly toolchain is needed).
export RUSTC_BOOTSTRAP=1
# Safe Rust only (every crate forbids unsafe): no sanitizer, but debug
# assertions (integer overflow checks) stay on.
FUZZ_FLAGS=(--sanitizer none --debug-assertions)

if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${FUZZ_FLAGS[@]}"

work="$CARGO_TARGET_DIR/fuzz-work"
mkdir -p "$work"
status=0
summary=()
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  log="$work/$t.log"
  mkdir -p "$corpus" "$artifacts"
  echo "== $t: ${SECONDS_PER_TARGET}s"
  if cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "$corpus" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -artifact_prefix="$artifacts" \
      -print_final_stats=1 -max_len=16384 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
    tail -n 40 "$log"
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo '?')
  ft=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo '?')
  files=$(find "$corpus" -type f | wc -l)
  crashes=$(find "$artifacts" -type f | wc -l)
  summary+=("$(printf '%-14s %-5s execs=%-10s cov=%-6s ft=%-6s corpus=%-6s crashes=%s' \
    "$t" "$result" "$execs" "$cov" "$ft" "$files" "$crashes")")
done

echo
echo "fuzz summary (${SECONDS_PER_TARGET}s per target; logs in $work):"
printf '  %s\n' "${summary[@]}"
exit "$status"
