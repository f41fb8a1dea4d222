# Shared by scripts/local.sh and scripts/test.sh: Python tools in virtualenvs under .venv/,
# the DynamoDB/SQS/EventBridge Scheduler emulator (moto_server) on loopback, dummy AWS credentials.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.local"
mkdir -p "$STATE"

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
# The emulator sometimes answers 500 under concurrent writes (a thread-safety bug in moto's
# transactions); the SDK retries those, a few more times than its default 3.
export AWS_MAX_ATTEMPTS="${AWS_MAX_ATTEMPTS:-8}"
# Nothing on this path may reach a real AWS account.
unset AWS_PROFILE AWS_SESSION_TOKEN

# A step, with the seconds the script has run so far.
log() { printf '\033[1m==> [%4ss] %s\033[0m\n' "$SECONDS" "$*" >&2; }

# venv NAME PACKAGES... — creates .venv/NAME once and installs the packages into it.
venv() {
  local name="$1"; shift
  local dir="$VENV/$name" stamp="$VENV/$name/.installed"
  if [ ! -x "$dir/bin/python" ]; then
    log "creating virtualenv .venv/$name"
    python3 -m venv "$dir"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$*" ]; then
    log "installing into .venv/$name: $*"
    "$dir/bin/pip" install --quiet --upgrade "$@"
    echo "$*" > "$stamp"
  fi
}

# The Python tools the scripts use, each in its own virtualenv.
venv_moto() { venv moto "moto[server]>=5.1,<6"; }
venv_schemathesis() { venv schemathesis "schemathesis>=4.3,<5"; }
venv_tools() { venv tools "cfn-lint>=1.20,<2" "aws-sam-cli>=1.120,<2"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# run_moto PORT — starts an emulator process in the background (pid in RUN_MOTO_PID) and
# waits until it answers.
run_moto() {
  local port="$1"
  venv_moto
  log "starting moto_server on 127.0.0.1:$port"
  "$VENV/moto/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" > "$STATE/moto-$port.log" 2>&1 &
  RUN_MOTO_PID=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$RUN_MOTO_PID" 2>/dev/null; then
      cat "$STATE/moto-$port.log" >&2; echo "moto_server did not start (is port $port taken?)" >&2; return 1
    fi
    if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/"; then return 0; fi
    sleep 0.2
  done
  echo "moto_server did not answer on port $port" >&2
  return 1
}

# start_moto PORT — the emulator of every service, at AWS_ENDPOINT_URL (pid in MOTO_PID).
start_moto() {
  run_moto "$1"
  MOTO_PID=$RUN_MOTO_PID
  export AWS_ENDPOINT_URL="http://127.0.0.1:$1"
}

# start_moto_dynamodb PORT — a second emulator process for DynamoDB alone, at
# AWS_ENDPOINT_URL_DYNAMODB (pid in MOTO_DYNAMODB_PID): the emulator runs Python under one
# interpreter lock, so DynamoDB's work and the queues' share one core unless they are split.
start_moto_dynamodb() {
  run_moto "$1"
  MOTO_DYNAMODB_PID=$RUN_MOTO_PID
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$1"
}
