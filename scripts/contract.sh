#!/usr/bin/env bash
# The API contract (docs/openapi.yaml) against the running service: schemathesis generates
# requests from it, valid and invalid, for every operation, against a local stack seeded with
# data in every status (scripts/contract_seed.py), and checks that no answer is a 5xx and that
# every answer's status, content type and body are ones the contract documents.
# Run by scripts/test.sh against its emulator; run alone, it starts one. CONTRACT_EXAMPLES
# (default 40) bounds the cases per operation in each phase; CONTRACT_ARGS adds schemathesis
# options (`--seed N` to replay a run, `--report har` to keep every request and answer).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

venv schemathesis "schemathesis>=4.3,<5"
cleanup=()
trap 'for pid in "${cleanup[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT INT TERM
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  start_moto "$(free_port)"
  cleanup+=("$MOTO_PID")
fi

cargo build --quiet -p local --bin local-stack
port="$(free_port)"
api="http://127.0.0.1:$port"
log "local stack for the contract run on $api"
export CONTRACT_APP_SECRET="contract-app-secret-$port" CONTRACT_VERIFY_TOKEN="contract-verify-$port"
export CONTRACT_API_KEY="wak_contract_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
PORT="$port" FAKE_WHATSAPP_PORT="$(free_port)" TABLE_NAME="contract-$port" SENDER_WORKERS=2 \
  WHATSAPP_APP_SECRET="$CONTRACT_APP_SECRET" WHATSAPP_VERIFY_TOKEN="$CONTRACT_VERIFY_TOKEN" LOCAL_API_KEY="$CONTRACT_API_KEY" \
  RUST_LOG="${RUST_LOG:-warn}" "$ROOT/target/debug/local-stack" > "$STATE/contract-stack-$port.log" 2>&1 &
cleanup+=("$!")
for _ in $(seq 1 150); do
  if curl -s -o /dev/null "$api/api/accounts"; then break; fi
  if ! kill -0 "${cleanup[-1]}" 2>/dev/null; then cat "$STATE/contract-stack-$port.log" >&2; exit 1; fi
  sleep 0.2
done

config="$STATE/schemathesis-$port.toml"
"$VENV/schemathesis/bin/python" scripts/contract_seed.py "$api" "$config" "$CONTRACT_VERIFY_TOKEN"

log "schemathesis: every operation of docs/openapi.yaml, ${CONTRACT_EXAMPLES:-40} examples each per phase"
status=0
PYTHONPATH="$ROOT/scripts" SCHEMATHESIS_HOOKS=contract_hooks "$VENV/schemathesis/bin/schemathesis" --config-file "$config" run docs/openapi.yaml --url "$api" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${CONTRACT_EXAMPLES:-40}" --workers 1 --no-color --generation-database none ${CONTRACT_ARGS:-} \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "the service's log: $STATE/contract-stack-$port.log" >&2
  grep -iE "panic|error" "$STATE/contract-stack-$port.log" | tail -20 >&2 || true
fi
exit "$status"
