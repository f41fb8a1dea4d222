#!/usr/bin/env bash
# The README's "Walkthrough (curl)" block, run as written against a fresh local stack: the block
# is read from README.md at run time, only its two local URLs are changed (to free ports), its
# commands run in order in a temporary directory, and what its comments say a command answers
# is checked against what the command printed (scripts/walkthrough_check.py says how comments
# are read). Run by scripts/test.sh against its emulator; run alone, it starts one.
# --self-test: the block's parsing and the checks against canned answers, without a stack.
# WALKTHROUGH_README reads another copy of the README (to see a check fail, change a value in a
# comment of a copy's block).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

readme="${WALKTHROUGH_README:-$ROOT/README.md}"
name="$(basename "$readme")"
checker="$ROOT/scripts/walkthrough_check.py"
work="$(mktemp -d)"
cleanup=()
trap 'for pid in "${cleanup[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT INT TERM

# The ```sh block under the heading (before the next heading), and the README line it starts on.
fence="$(awk '/^## Walkthrough \(curl\)[[:space:]]*$/ { h = 1; next } h && /^## / { exit } h && /^```sh[[:space:]]*$/ { print NR; exit }' "$readme")"
if [ -z "$fence" ]; then echo "$name: no \`\`\`sh block under '## Walkthrough (curl)'" >&2; exit 1; fi
awk -v f="$fence" 'NR > f && /^```/ { done = 1; exit } NR > f { print } END { exit !done }' "$readme" > "$work/block.sh" \
  || { echo "$name: the walkthrough's \`\`\`sh block (line $fence) is not closed" >&2; exit 1; }
first=$((fence + 1))

if [ "${1:-}" = --self-test ]; then
  python3 "$checker" self-test "$work/block.sh" "$name" "$first"
  exit
fi

# The key the walkthrough tells the reader to start the stack with.
key="$(awk -v f="$fence" '/^## Walkthrough \(curl\)/ { h = 1 } h && NR < f' "$readme" | grep -oE 'LOCAL_API_KEY=[A-Za-z0-9_-]+' | head -1 | cut -d= -f2)"
if [ -z "$key" ]; then echo "$name: the walkthrough no longer says which LOCAL_API_KEY to start the stack with" >&2; exit 1; fi
for url in http://127.0.0.1:3000 http://127.0.0.1:8090; do
  if ! grep -qF "$url" "$work/block.sh"; then
    echo "$name: the walkthrough no longer uses $url, one of the two URLs scripts/walkthrough.sh moves to free ports" >&2
    exit 1
  fi
done

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  start_moto "$(free_port)"
  cleanup+=("$MOTO_PID")
fi
cargo build --quiet -p local --bin local-stack
port="$(free_port)"
fake_port="$(free_port)"
while [ "$fake_port" = "$port" ]; do fake_port="$(free_port)"; done

sed -e "s#http://127\.0\.0\.1:3000#http://127.0.0.1:$port#g" -e "s#http://127\.0\.0\.1:8090#http://127.0.0.1:$fake_port#g" \
  "$work/block.sh" > "$work/walkthrough.sh"
# Nothing in the run may reach another server on this machine (a developer's own stack on 3000).
stray="$(grep -oE '(127\.0\.0\.1|localhost|0\.0\.0\.0):[0-9]+' "$work/walkthrough.sh" | grep -vxE "127\.0\.0\.1:($port|$fake_port)" || true)"
if [ -n "$stray" ]; then echo "$name: the walkthrough also talks to $stray; scripts/walkthrough.sh does not move that" >&2; exit 1; fi

logs="$STATE/walkthrough-$port"
mkdir -p "$logs" "$work/run"
api="http://127.0.0.1:$port"
log "local stack for the walkthrough on $api (fake WhatsApp API on $fake_port)"
# As `LOCAL_API_KEY=… scripts/local.sh` starts it, with its defaults: nothing from this shell
# (WHATSAPP_API_URL, secrets, FAKE_* webhook settings) may change what the walkthrough sees.
env -i PATH="$PATH" HOME="$HOME" AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" AWS_DEFAULT_REGION="$AWS_DEFAULT_REGION" \
  AWS_MAX_ATTEMPTS="$AWS_MAX_ATTEMPTS" PORT="$port" FAKE_WHATSAPP_PORT="$fake_port" TABLE_NAME="walkthrough-$port" \
  DEFAULT_REGION=US LOCAL_API_KEY="$key" RUST_LOG="${RUST_LOG:-warn}" \
  "$ROOT/target/debug/local-stack" > "$logs/stack.log" 2>&1 &
cleanup+=("$!")
for _ in $(seq 1 150); do
  if curl -s -o /dev/null "$api/api/accounts"; then break; fi
  if ! kill -0 "${cleanup[-1]}" 2>/dev/null; then cat "$logs/stack.log" >&2; exit 1; fi
  sleep 0.2
done

python3 "$checker" plan "$work/walkthrough.sh" "$name" "$first" "$logs"
log "the walkthrough, command by command (outputs in $logs)"
started=$SECONDS
status=0
# A clean environment, as in a new terminal: the block has to set everything it uses.
(cd "$work/run" && env -i PATH="$PATH" HOME="$HOME" LANG="${LANG:-C.UTF-8}" bash --noprofile --norc "$logs/run.sh" < /dev/null) || status=$?
log "what the walkthrough's comments say, against what it printed ($((SECONDS - started)) s)"
python3 "$checker" check "$logs" || status=1
if [ "$status" -ne 0 ]; then
  echo "the walkthrough's outputs: $logs; the service's log: $logs/stack.log" >&2
  grep -iE "panic|error" "$logs/stack.log" | tail -20 >&2 || true
fi
exit "$status"
