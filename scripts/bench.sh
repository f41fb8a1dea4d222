#!/usr/bin/env bash
# Benchmarks that print their figures (never part of the tests). Each starts its own emulator
# and local stack on free ports and stops them afterwards.
#   scripts/bench.sh import [ROWS]   time to import ROWS CSV rows (default 100000) in one request
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

what="${1:-import}"
log "building the local stack (release)"
cargo build --release -q -p local --bin local-stack

start_moto "$(free_port)"
export PORT="$(free_port)" TABLE_NAME="bench-$(date +%s)" RUST_LOG=info
"$ROOT/target/release/local-stack" > "$STATE/bench-stack.log" 2>&1 &
STACK_PID=$!
trap 'kill $STACK_PID $MOTO_PID 2>/dev/null || true' EXIT INT TERM
API="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -s -o /dev/null "$API/api/accounts" && break; sleep 0.2; done

case "$what" in
  import)
    rows="${2:-100000}"
    "$VENV/moto/bin/python" "$ROOT/scripts/bench_import.py" "$API" "$rows"
    echo "phases inside the handler (parse+validate / existing-number check / writes):"
    grep -o 'import finished.*' "$STATE/bench-stack.log" | sed 's/\x1b\[[0-9;]*m//g'
    ;;
  *) echo "unknown benchmark: $what (try: import)" >&2; exit 2 ;;
esac
