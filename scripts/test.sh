#!/usr/bin/env bash
# Every check, from a fresh clone: formatting, lints, unit tests, integration tests of every
# route and of scheduled starts against DynamoDB/SQS/EventBridge Scheduler in the emulator, the
# sample events, the API contract (docs/openapi.yaml: checked against the router by a test, and
# against a running local stack by schemathesis), the README's walkthrough (run as written
# against a local stack, its answers checked against its comments), the SAM template
# (cfn-lint and sam validate --lint; no Docker needed), and the emulator's own shortcuts against
# a model of DynamoDB (scripts/emulator_check.py).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

# The Python tools install in the background while cargo builds (a few minutes of downloads
# that need not wait for the compiler); their log is shown if they fail.
(venv_tools && venv_moto && venv_schemathesis) > "$STATE/venvs.log" 2>&1 &
VENVS_PID=$!
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo test --no-run (building every test)"
cargo test --workspace --no-run

# Clippy builds the dependencies once more, in check mode (a few minutes on 2 cores). The
# integration tests below mostly wait (on the emulator, on paced sends), so clippy runs beside
# them, at the lowest priority and in its own target directory; its verdict is awaited and
# shown before the contract run.
log "cargo clippy (in the background, niced)"
CARGO_TARGET_DIR="$ROOT/target/clippy" nice -n 19 cargo clippy --workspace --all-targets -- -D warnings \
  > "$STATE/clippy.log" 2>&1 &
CLIPPY_PID=$!

if ! wait "$VENVS_PID"; then cat "$STATE/venvs.log" >&2; exit 1; fi
start_moto "$(free_port)"

# The contract run and the README walkthrough each start a local stack and an emulator of their
# own (so the Rust tests' emulator is theirs alone), and run beside the Rust tests, niced (the
# tests keep the priority; they mostly wait anyway), as do the template's checks. Their outputs
# are kept in files and shown once the Rust tests have ended.
log "API contract (schemathesis), README walkthrough and template checks against their own stacks (in the background, niced)"
(unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB && exec nice -n 10 bash scripts/contract.sh) > "$STATE/contract.log" 2>&1 &
CONTRACT_PID=$!
(
  unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB
  nice -n 10 bash scripts/walkthrough.sh --self-test && nice -n 10 bash scripts/walkthrough.sh
) > "$STATE/walkthrough.log" 2>&1 &
WALKTHROUGH_PID=$!
(
  echo "==> cfn-lint template.yaml" && nice -n 10 "$VENV/tools/bin/cfn-lint" template.yaml &&
    echo "==> sam validate --lint" &&
    nice -n 10 "$VENV/tools/bin/sam" validate --lint --template template.yaml --region "$AWS_REGION"
) > "$STATE/template-lint.log" 2>&1 &
LINT_PID=$!
# The emulator's own shortcuts (scripts/moto_server.py) against a model of DynamoDB, on an
# emulator of their own (niced, both): the tests above and below rely on its answers.
(
  renice -n 10 -p "$BASHPID" > /dev/null && port="$(free_port)" && run_moto "$port" && trap 'kill $RUN_MOTO_PID 2>/dev/null || true' EXIT &&
    echo "==> emulator check (seed 1)" &&
    "$VENV/moto/bin/python" scripts/emulator_check.py "http://127.0.0.1:$port" --seed 1
) > "$STATE/emulator-check.log" 2>&1 &
EMULATOR_CHECK_PID=$!
trap 'kill $MOTO_PID $CLIPPY_PID $CONTRACT_PID $WALKTHROUGH_PID $LINT_PID $EMULATOR_CHECK_PID 2>/dev/null || true' EXIT INT TERM

# Six tests at a time, whatever the cores: the integration tests mostly wait (on the emulator, on
# paced sends, on a send window's opening), and the sending ones take turns among themselves
# (a lock in the test stack), so with two threads a second sending test would hold the other
# thread idle while the short API tests queue behind it.
log "cargo test (unit, events, and integration against $AWS_ENDPOINT_URL)"
cargo test --workspace --no-fail-fast -- --test-threads 6

log "cargo clippy: waiting for its verdict"
if ! wait "$CLIPPY_PID"; then cat "$STATE/clippy.log" >&2; echo "cargo clippy failed" >&2; exit 1; fi
grep -E "^(warning|error)" "$STATE/clippy.log" >&2 || true

# wait_for NAME PID LOG — waits for a background check, shows its output, fails if it failed.
wait_for() {
  log "$1: waiting for it"
  local rc=0
  wait "$2" || rc=$?
  cat "$3" >&2
  [ "$rc" -eq 0 ] || { echo "$1 failed" >&2; exit 1; }
}
wait_for "API contract" "$CONTRACT_PID" "$STATE/contract.log"
wait_for "README walkthrough" "$WALKTHROUGH_PID" "$STATE/walkthrough.log"
wait_for "cfn-lint and sam validate --lint" "$LINT_PID" "$STATE/template-lint.log"
wait_for "emulator check" "$EMULATOR_CHECK_PID" "$STATE/emulator-check.log"

log "all checks passed"
