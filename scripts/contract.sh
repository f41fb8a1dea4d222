#!/usr/bin/env bash
# The API contract (docs/openapi.yaml) against the running service: schemathesis generates
# requests from it, valid and invalid, for every operation, against a local stack seeded with
# data in every status (scripts/contract_seed.py), and checks that no answer is a 5xx, that
# every answer's status, content type and body are ones the contract documents, that every
# request the contract forbids is refused (negative_data_rejection) and that the API key is
# enforced wherever the contract asks for it (ignored_auth).
# Run by scripts/test.sh against its emulator; run alone, it starts one. CONTRACT_EXAMPLES
# (default 40) bounds the cases per operation in each phase; CONTRACT_ARGS and the script's
# arguments add schemathesis options (`--report har` keeps every request and answer).
# `--seed N` (or CONTRACT_SEED=N) replays a run: the seed drives schemathesis and every random
# choice of scripts/contract_hooks.py; without one a seed is drawn and printed.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

venv_schemathesis

# The seed: --seed N (or --seed=N) among the options, else CONTRACT_SEED, else a fresh one.
seed="${CONTRACT_SEED:-}"
options=()
set -- ${CONTRACT_ARGS:-} "$@"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --seed) [ "$#" -ge 2 ] || { echo "--seed needs a value" >&2; exit 2; }; seed="$2"; shift 2 ;;
    --seed=*) seed="${1#--seed=}"; shift ;;
    *) options+=("$1"); shift ;;
  esac
done
seed="${seed:-$(python3 -c 'import secrets; print(secrets.randbelow(2**32))')}"
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "the seed must be a non-negative integer, not '$seed'" >&2; exit 2; }
export CONTRACT_SEED="$seed"

cleanup=()
stack=""
trap 'for pid in "${cleanup[@]}"; do kill "$pid" 2>/dev/null || true; done; [ -z "$stack" ] || rm -f "$stack"' EXIT INT TERM
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  start_moto "$(free_port)"
  cleanup+=("$MOTO_PID")
fi

cargo build --quiet -p local --bin local-stack
port="$(free_port)"
# A copy of the binary, so that another build sharing the target directory cannot replace it.
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
stack="$STATE/contract-local-stack-$port"
cp "$target/debug/local-stack" "$stack"
api="http://127.0.0.1:$port"
log "local stack for the contract run on $api"
export CONTRACT_APP_SECRET="contract-app-secret-$port" CONTRACT_VERIFY_TOKEN="contract-verify-$port"
export CONTRACT_API_KEY="wak_contract_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
PORT="$port" FAKE_WHATSAPP_PORT="$(free_port)" TABLE_NAME="contract-$port" SENDER_WORKERS=2 \
  WHATSAPP_APP_SECRET="$CONTRACT_APP_SECRET" WHATSAPP_VERIFY_TOKEN="$CONTRACT_VERIFY_TOKEN" LOCAL_API_KEY="$CONTRACT_API_KEY" \
  RUST_LOG="${RUST_LOG:-warn}" "$stack" > "$STATE/contract-stack-$port.log" 2>&1 &
cleanup+=("$!")
for _ in $(seq 1 150); do
  if curl -s -o /dev/null "$api/api/accounts"; then break; fi
  if ! kill -0 "${cleanup[-1]}" 2>/dev/null; then cat "$STATE/contract-stack-$port.log" >&2; exit 1; fi
  sleep 0.2
done

# The configuration (written by contract_seed.py): the seeded ids, and the checks.
config="$STATE/schemathesis-$port.toml"
"$VENV/schemathesis/bin/python" scripts/contract_seed.py "$api" "$config" "$CONTRACT_VERIFY_TOKEN"

log "schemathesis: every operation of docs/openapi.yaml, ${CONTRACT_EXAMPLES:-40} examples each per phase, seed $seed"
status=0
PYTHONPATH="$ROOT/scripts" SCHEMATHESIS_HOOKS=contract_hooks "$VENV/schemathesis/bin/schemathesis" --config-file "$config" run docs/openapi.yaml --url "$api" \
  --max-examples "${CONTRACT_EXAMPLES:-40}" --workers 1 --no-color --generation-database none --seed "$seed" ${options[@]+"${options[@]}"} \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "to replay this run: CONTRACT_EXAMPLES=${CONTRACT_EXAMPLES:-40} scripts/contract.sh --seed $seed${options[*]+" ${options[*]}"}" >&2
  echo "the service's log: $STATE/contract-stack-$port.log" >&2
  grep -iE "panic|error" "$STATE/contract-stack-$port.log" | tail -20 >&2 || true
fi
exit "$status"
