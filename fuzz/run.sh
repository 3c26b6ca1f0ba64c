#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets/ for a bounded time and exits non-zero if any of them
# finds a crash (a panic or a broken invariant), a timeout or an out-of-memory input.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     # default 20; CI runs `fuzz/run.sh 15`
#
# Works with stable Rust alone: cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage),
# which RUSTC_BOOTSTRAP=1 lets a stable compiler accept. cargo-fuzz is installed if missing.
# Each target starts from its seeds in fuzz/corpus/<target>/ (the files with an extension,
# committed); what the fuzzer adds there (hash-named files), fuzz/artifacts/ and fuzz/target/
# are git-ignored. A crash is saved as fuzz/artifacts/<target>/crash-*; to replay it:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/crash-...
# FUZZ_SANITIZER=address turns AddressSanitizer on (slower; orgate's only unsafe code is one
# mallopt call at start, src/memory.rs, which no target reaches).
set -euo pipefail

seconds=${1:-20}
case "$seconds" in
'' | *[!0-9]*)
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
  ;;
esac
sanitizer=${FUZZ_SANITIZER:-none}

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

echo "== building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

logs=fuzz/target/run-logs
mkdir -p "$logs"
failed=()
summary=()
for target in $(cargo fuzz list); do
  mkdir -p "fuzz/corpus/$target"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "fuzz/dict/$target.dict" ] && args+=(-dict="fuzz/dict/$target.dict")
  echo "== $target: ${seconds}s"
  if cargo fuzz run -s "$sanitizer" "$target" -- "${args[@]}" >"$logs/$target.log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$target")
    # The panic message, then the input and how to replay it.
    grep -A 8 -m 1 -E 'panicked at|ERROR: libFuzzer' "$logs/$target.log" || true
    sed -n '/^Failing input:/,/^Minimize/p' "$logs/$target.log"
  fi
  runs=$(grep -o -E 'stat::number_of_executed_units: *[0-9]+' "$logs/$target.log" | grep -o -E '[0-9]+$' || true)
  summary+=("$(printf '%-10s %-7s %12s execs  (log: %s)' "$target" "$result" "${runs:-?}" "$logs/$target.log")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
