#!/usr/bin/env bash
# Benchmarks that print their figures (never part of the tests). Each starts its own emulator
# (and, for imports, a local stack) on free ports and stops them afterwards.
#   scripts/bench.sh import [ROWS]              import ROWS CSV rows (default 100000) in one request, twice
#   scripts/bench.sh upload [ROWS]              upload ROWS CSV rows (default 100000) with the presigned URL: time until
#                                               the background import completes, a plain BatchWriteItem of the same
#                                               items for comparison (the ratio), the stack's peak memory growth;
#                                               then the export of the ROWS (time, size, memory) and the delete
#                                               (time until every item is gone). The million: upload 1000000
#                                               (about 45 minutes; BENCH_UPLOAD_STEPS=import: stop after the
#                                               import's figures)
#   scripts/bench.sh send [SECONDS]             campaigns of SECONDS (default 25) of each tier's pace with
#                                               WhatsApp's status webhooks on: rate, worst second, requests
#                                               and write units per message, statuses applied
#   scripts/bench.sh webhook [RECIPIENTS]       delivery statuses, one per signed POST and 1,000 per POST:
#                                               webhook latency, requests per status, time until applied (default 2000)
#   scripts/bench.sh coldstart [RUNS]           the function binary (release build) started RUNS times (default 10)
#                                               as each of five functions, against a local stand-in of the Lambda
#                                               Runtime API: init and first-invoke times, binary size, peak memory
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

what="${1:-import}"
log "building (release)"
if [ "$what" = coldstart ]; then
  # The functions package alone, as it is deployed (a build with `local` would unify features).
  cargo build --release -q -p functions --bin bootstrap
  cargo build --release -q -p local --bin bench-coldstart
else
  cargo build --release -q -p local --bin local-stack --bin bench-send --bin bench-webhook
fi

start_moto "$(free_port)"
start_moto_dynamodb "$(free_port)"
trap 'kill ${STACK_PID:-} $MOTO_PID $MOTO_DYNAMODB_PID 2>/dev/null || true' EXIT INT TERM

case "$what" in
  import|upload)
    rows="${2:-100000}"
    export PORT="$(free_port)" FAKE_WHATSAPP_PORT="$(free_port)" TABLE_NAME="bench-$(date +%s)" RUST_LOG=info
    export LOCAL_API_KEY="bench-$(date +%s%N)"   # the import goes through the API, key and all
    "$ROOT/target/release/local-stack" > "$STATE/bench-stack.log" 2>&1 &
    STACK_PID=$!
    API="http://127.0.0.1:$PORT"
    for _ in $(seq 1 100); do curl -s -o /dev/null "$API/api/accounts" && break; sleep 0.2; done
    if [ "$what" = upload ]; then
      "$VENV/moto/bin/python" "$ROOT/scripts/bench_upload.py" "$API" "$rows" "$STACK_PID"
      grep -o 'upload import finished.*' "$STATE/bench-stack.log" | sed 's/\x1b\[[0-9;]*m//g'
    else
      "$VENV/moto/bin/python" "$ROOT/scripts/bench_import.py" "$API" "$rows"
      echo "phases inside the handler (parse+validate / existing-number check / writes):"
      grep -o 'import finished.*' "$STATE/bench-stack.log" | sed 's/\x1b\[[0-9;]*m//g'
    fi
    ;;
  send)
    # The emulators stand in for AWS, which runs on machines of its own: here they share two
    # cores with the service under test, whose senders must wake at their slots (5 ms apart
    # at 200 msg/s). A lower priority lets a sender's timer take a core from them at once;
    # they keep every cycle the service does not use.
    renice -n 15 -p "$MOTO_PID" "$MOTO_DYNAMODB_PID" > /dev/null
    RUST_LOG="${RUST_LOG:-warn}" "$ROOT/target/release/bench-send" "${2:-25}" ${3:+"$3"}
    ;;
  webhook)
    RUST_LOG=warn "$ROOT/target/release/bench-webhook" "${2:-2000}"
    ;;
  coldstart)
    # The functions' AWS requests go to the emulators (the benchmark makes the table, queues,
    # bus and schedule group there first); their logs are discarded.
    "$ROOT/target/release/bench-coldstart" --runs "${2:-10}" --binary "$ROOT/target/release/bootstrap" \
      get-campaign create-campaign sender whatsapp-webhook authorizer
    ;;
  *) echo "unknown benchmark: $what (try: import, upload, send, webhook, coldstart)" >&2; exit 2 ;;
esac
