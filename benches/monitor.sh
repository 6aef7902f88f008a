#!/usr/bin/env bash
# One `twiml-failover monitor --once` round over a fake 10,000-number account (issue 26): the REST
# API requests it made, its wall time and its peak resident memory.   bash benches/monitor.sh
#
# The fake Twilio API of the tests (tests/numbers/fake.rs) holds MONITOR_NUMBERS numbers (10,000)
# and 20 Messaging Services of 50 numbers each, every number wired to one primary and one fallback
# on loopback (TLS servers answering TwiML), so the round reads 10 + 1 + 1 + 20 pages and probes
# the 4 distinct URLs. The benchmark is the ignored test `bench_one_round_over_a_large_account` of
# tests/monitor.rs. PROFILE=release measures a release build (the default is the debug build the
# tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[[ "${PROFILE:-debug}" == release ]] && profile=(--release)
MONITOR_NUMBERS=${MONITOR_NUMBERS:-10000} cargo test "${profile[@]}" --test monitor \
  bench_one_round_over_a_large_account -- --ignored --nocapture 2>&1 | grep '^monitor round:'
