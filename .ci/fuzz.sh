#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 30). libFuzzer needs a
# nightly compiler: the machine's nightly when present, else stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
for target in form signature decode render; do
  echo "== fuzz $target for ${seconds}s"
  status=0
  cargo "${toolchain[@]}" fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    > "fuzz/$target.log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|SUMMARY|==[0-9]+== ERROR)|panicked" "fuzz/$target.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "fuzz/$target.log"
    echo "fuzz target $target failed (exit $status); the input is under fuzz/artifacts/$target/"
    exit 1
  fi
done
