#!/usr/bin/env bash
# The whole service on this machine: the emulator (moto_server), the table, queues and schedule
# group from template.yaml, every API route on http://127.0.0.1:${PORT:-3000} behind an API key
# (LOCAL_API_KEY, or one made and printed at start), and due schedules fired locally. Ctrl-C
# stops it all.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export PORT="${PORT:-3000}"
MOTO_PORT="${MOTO_PORT:-4566}"
export TABLE_NAME="${TABLE_NAME:-whatsapp-campaigns}"
export DEFAULT_REGION="${DEFAULT_REGION:-US}"
export RUST_LOG="${RUST_LOG:-info}"

cd "$ROOT"
log "building the local stack"
cargo build --release -p local --bin local-stack

start_moto "$MOTO_PORT"
start_moto_dynamodb "${MOTO_DYNAMODB_PORT:-$((MOTO_PORT + 1))}"
trap 'kill $MOTO_PID $MOTO_DYNAMODB_PID 2>/dev/null || true' EXIT INT TERM

log "API on http://127.0.0.1:$PORT (emulators: $AWS_ENDPOINT_URL, DynamoDB $AWS_ENDPOINT_URL_DYNAMODB; table $TABLE_NAME)"
if [ -n "${LOCAL_API_KEY:-}" ]; then
  log "API key from LOCAL_API_KEY (printed below); every /api/... request needs it"
else
  log "API key: a new one, printed below (set LOCAL_API_KEY to keep one across restarts)"
fi
"$ROOT/target/release/local-stack"
