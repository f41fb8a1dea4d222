"""The README's walkthrough, checked: splits its ```sh block into the commands bash would read,
writes a script that runs them as written and keeps each one's output, and checks those outputs
against what the block's comments say each command answers. Used by scripts/walkthrough.sh.

What a comment after a command (on its line, or on the comment lines right below it) expects:
  "key": value     the output (JSON, usually the envelope) has that key with that value somewhere,
                   nested objects included (strings, numbers, true, false, null; a value with an
                   ellipsis is any value, and "a": "X", "b": "X…" means b starts with a)
  # 42             a bare number is the whole output; a bare word is the whole output, or a key
                   of the JSON answer that is true ("# revoked" for {"revoked": true})
  # 401: …, … (401)  an HTTP error status: the envelope's "status" is "error"
Anything else is prose and is not checked.

Usage: walkthrough_check.py plan BLOCK README_NAME FIRST_LINE LOGS   (writes LOGS/run.sh, LOGS/plan.json)
       walkthrough_check.py check LOGS
       walkthrough_check.py self-test BLOCK README_NAME FIRST_LINE
"""

import functools
import json
import re
import shlex
import subprocess
import sys

ELLIPSES = ("…", "...")
STRING = r'"(?:[^"\\]|\\.)*"'
FRAGMENT = re.compile(
    r'(' + STRING + r')\s*:\s*(' + STRING + r'|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)(?=[\s,}\]]|$)')
HTTP_STATUS = re.compile(r'^([1-5]\d\d)\s*:|\(([1-5]\d\d)\)\s*$')


# --- reading the block ---------------------------------------------------------------------

def scan(text):
    """Comments outside quotes in shell text, as (line index, offset, comment), and whether the
    text ends in a line continuation. Quotes, $( ) and backquotes nest as bash reads them."""
    comments, stack, i, line, escaped = [], ["top"], 0, 0, False
    continued = False
    while i < len(text):
        c, ctx = text[i], stack[-1]
        if c == "\n":
            line += 1
        if ctx == "comment":
            if c == "\n":
                stack.pop()
        elif ctx == "sq":
            if c == "'":
                stack.pop()
        elif escaped:
            escaped = False
            if c == "\n" and i == len(text) - 1:
                continued = True
        elif c == "\\":
            escaped = True
        elif ctx == "dq":
            if c == '"':
                stack.pop()
            elif text.startswith("$(", i):
                stack.append("sub")
                i += 1
            elif c == "`":
                stack.append("bq")
        else:
            start_of_word = i == 0 or text[i - 1] in " \t\n;|&()"
            if c == "#" and start_of_word:
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                line_start = text.rfind("\n", 0, i) + 1
                comments.append((line, i - line_start, text[i:end]))
                stack.append("comment")
            elif c == "'":
                stack.append("sq")
            elif c == '"':
                stack.append("dq")
            elif c == "`":
                if ctx == "bq":
                    stack.pop()
                else:
                    stack.append("bq")
            elif text.startswith("$(", i):
                stack.append("sub")
                i += 1
            elif c == "(":
                stack.append("paren")
            elif c == ")" and ctx in ("sub", "paren"):
                stack.pop()
        i += 1
    return comments, continued


@functools.lru_cache(maxsize=None)
def complete(text):
    """Whether bash reads the text as whole commands (no open quote, compound command or pipe)."""
    if scan(text)[1]:
        return False
    parsed = subprocess.run(["bash", "-n"], input=text.encode(), capture_output=True)
    # An unfinished here-document is only a warning to bash -n.
    return parsed.returncode == 0 and b"here-document" not in parsed.stderr


def split(block):
    """The block's lines grouped as bash reads them: commands (a multi-line one as one), and
    comment-only and blank lines, each with the index of its first line."""
    lines = block.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    groups, start = [], None
    for i, line in enumerate(lines):
        if start is None:
            if not line.strip():
                groups.append({"kind": "blank", "start": i, "lines": [line]})
                continue
            if line.lstrip().startswith("#"):
                groups.append({"kind": "comment", "start": i, "lines": [line]})
                continue
            start = i
        if complete("\n".join(lines[start:i + 1]) + "\n"):
            groups.append({"kind": "command", "start": start, "lines": lines[start:i + 1]})
            start = None
    if start is not None:
        raise SystemExit(f"the block ends inside a command that starts on its line {start + 1}")
    return groups


# --- what a comment expects ----------------------------------------------------------------

def expectations(comment):
    """The checks a comment asks for, and the fragments it shows that are not checked."""
    text = comment.lstrip("#").strip()
    checks, skipped = [], []
    status = HTTP_STATUS.search(text)
    if status:
        code = int(status.group(1) or status.group(2))
        want = "error" if code >= 400 else "success"
        checks.append({"kind": "envelope", "want": want, "label": f'HTTP {code}: the envelope\'s "status" is "{want}"'})
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        checks.append({"kind": "plain", "want": text, "label": f"the output is {text}"})
    elif re.fullmatch(r"[A-Za-z_][\w-]*", text):
        checks.append({"kind": "word", "want": text, "label": f'the output is {text} (or "{text}": true)'})
    fragments = [(json.loads(k), raw, m.group(0)) for m in FRAGMENT.finditer(text) for k, raw in [m.groups()]]
    literal = {json.loads(raw): key for key, raw, _ in fragments if raw.startswith('"') and not any(e in raw for e in ELLIPSES)}
    samples = set()
    for key, raw, source in fragments:
        if not any(e in raw for e in ELLIPSES):
            continue
        head = json.loads(raw) if raw.startswith('"') else ""
        for e in ELLIPSES:
            head = head.split(e)[0]
        if head and head in literal and raw.startswith('"'):
            # The same sample twice ("prefix": "wak_3f", "key": "wak_3f…"): a relation, not a value.
            samples.add(literal[head])
            checks.append({"kind": "prefix", "key": literal[head], "of": key, "source": source,
                           "label": f'"{key}" starts with "{literal[head]}" (sample {json.dumps(head, ensure_ascii=False)})'})
        else:
            skipped.append(f"{source} (an ellipsis: any value)")
    for key, raw, source in fragments:
        if any(e in raw for e in ELLIPSES) or key in samples:
            continue
        checks.append({"kind": "field", "key": key, "want": json.loads(raw), "source": source,
                       "label": f"{json.dumps(key)}: {json.dumps(json.loads(raw), ensure_ascii=False)}"})
    return checks, skipped


def plan(block, readme, first_line):
    """Every command of the block with its README line and the comments about its answer."""
    groups = split(block)
    commands = []
    for n, g in enumerate(groups):
        if g["kind"] != "command":
            continue
        text = "\n".join(g["lines"]) + "\n"
        notes = [{"line": first_line + g["start"] + ln, "text": c}
                 for ln, offset, c in scan(text)[0] if g["lines"][ln][:offset].strip()]
        # Or the answer shown on the comment lines right below it, when its own line has none.
        for after in [] if notes else groups[n + 1:]:
            if after["kind"] != "comment":
                break
            notes.append({"line": first_line + after["start"], "text": after["lines"][0].strip()})
        for note in notes:
            note["checks"], note["skipped"] = expectations(note["text"])
        commands.append({"n": len(commands) + 1, "where": f"{readme}:{first_line + g['start']}", "text": text, "notes": notes})
    return commands


def driver(commands, logs):
    """A bash script running each command as written, in order, in the current shell (so that
    variables and functions carry on), with its output and exit status kept in LOGS."""
    out = ["# The README's walkthrough, command by command as written (walkthrough_check.py plan).", "set -u"]
    for c in commands:
        base = shlex.quote(f"{logs}/{c['n']:03d}")
        lines = c["text"].rstrip("\n").split("\n")
        shown = lines[0][:110] + (" …" if len(lines) > 1 or len(lines[0]) > 110 else "")
        out += [f"printf '  %s\\n' {shlex.quote(c['where'] + '  ' + shown)} >&2",
                "{", c["text"].rstrip("\n"), f"}} >{base}.out 2>{base}.err",
                f'walkthrough_rc=$?; echo "$walkthrough_rc" >{base}.rc; [ "$walkthrough_rc" -eq 0 ] || exit "$walkthrough_rc"']
    return "\n".join(out) + "\n"


# --- checking the outputs ------------------------------------------------------------------

def json_values(text):
    """The JSON documents the output consists of, or None when it is not JSON."""
    decoder, values, i, text = json.JSONDecoder(), [], 0, text.strip()
    try:
        while i < len(text):
            value, i = decoder.raw_decode(text, i)
            values.append(value)
            while i < len(text) and text[i].isspace():
                i += 1
    except ValueError:
        return None
    return values or None


def objects(value):
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from objects(v)


def same(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    return a == b


def evaluate(check, output):
    """(passed, what the output has instead)."""
    values = json_values(output)
    if check["kind"] == "plain":
        return output.strip() == check["want"], f"the output is {output.strip()[:200]!r}"
    if check["kind"] == "word":
        if output.strip() == check["want"]:
            return True, ""
        found = [o[check["want"]] for v in values or [] for o in objects(v) if check["want"] in o]
        return any(f is True for f in found), f"the output is {output.strip()[:200]!r}"
    if values is None:
        return False, "the output is not JSON"
    if check["kind"] == "envelope":
        got = values[0].get("status") if isinstance(values[0], dict) else None
        return got == check["want"], f'the envelope\'s "status" is {json.dumps(got)}'
    if check["kind"] == "prefix":
        pairs = [(o[check["key"]], o[check["of"]]) for v in values for o in objects(v) if check["key"] in o and check["of"] in o]
        ok = any(isinstance(p, str) and isinstance(s, str) and p and s.startswith(p) for p, s in pairs)
        return ok, f"{json.dumps(check['key'])}, {json.dumps(check['of'])} are {pairs[:3]}" if pairs else f"no object with {check['key']!r} and {check['of']!r}"
    found = [o[check["key"]] for v in values for o in objects(v) if check["key"] in o]
    if any(same(f, check["want"]) for f in found):
        return True, ""
    if not found:
        return False, f"no {json.dumps(check['key'])} in the answer"
    return False, f"{json.dumps(check['key'])} is " + " / ".join(json.dumps(f, ensure_ascii=False) for f in found[:5])


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def check(commands, logs, show=print):
    """Prints each command's checks, then each failure with its command and output; returns
    the number of failures."""
    failures, checked, failed, ran = [], 0, 0, 0
    for c in commands:
        base = f"{logs}/{c['n']:03d}"
        out, err, rc = read(base + ".out"), read(base + ".err"), read(base + ".rc")
        if out is None:
            if not failures:
                failures.append((c, ["it did not run (the run stopped before it)"], "", ""))
            break
        ran += 1
        if rc is None or rc.strip() != "0":
            why = "the shell stopped during it (an unset variable?)" if rc is None else f"it exited with status {rc.strip()}"
            failures.append((c, [f"the command failed: {why}"], out, err))
            show(f"{c['where']}  FAILED: {why}")
            continue
        if not c["notes"]:
            continue
        show(f"{c['where']}  {c['text'].split(chr(10))[0][:120]}")
        wrong = []
        for note in c["notes"]:
            if not note["checks"]:
                show(f"    -     {note['text'][:100]}  (prose, not checked)")
            for e in note["checks"]:
                ok, detail = evaluate(e, out)
                checked += 1
                show(f"    {'ok  ' if ok else 'FAIL'}  {e['label']}" + ("" if ok else f"   <- {detail}"))
                if not ok:
                    wrong.append(f"expected (line {note['line']}): {e['label']}\n  but {detail}")
            for s in note["skipped"]:
                show(f"    -     {s}")
        if wrong:
            failed += len(wrong)
            failures.append((c, wrong, out, err))
    show(f"{ran} of {len(commands)} commands ran; {checked} expectations checked, {failed} failed")
    for c, why, out, err in failures:
        show(f"\n--- {c['where']}\n$ {c['text'].rstrip()}\n" + "\n".join(why))
        show("output:\n" + (out[:3000].rstrip() if out.strip() else "(none)"))
        if err.strip():
            show(f"stderr:\n{err[:3000].rstrip()}")
    return failed + sum(1 for f in failures if not f[1][0].startswith("expected"))


# --- self-test: the parsing and the checks against canned answers, no stack --------------

def canned(checks):
    """An output every one of the checks accepts."""
    plain = [e["want"] for e in checks if e["kind"] in ("plain", "word")]
    if plain:
        return plain[0]
    envelope = next((e["want"] for e in checks if e["kind"] == "envelope"), "success")
    data = {}
    for e in checks:
        if e["kind"] == "field":
            data[e["key"]] = e["want"]
    for e in checks:
        if e["kind"] == "prefix":
            data[e["key"]], data[e["of"]] = "wak_0000", "wak_0000ffff"
    return json.dumps({"status": envelope, "data": data})


def altered(raw):
    """Another value of the same kind, as it would be written in a comment."""
    value = json.loads(raw)
    if isinstance(value, bool):
        return json.dumps(not value)
    if value is None:
        return "0"
    if isinstance(value, (int, float)):
        return json.dumps(value + 1)
    return json.dumps(value + "x")


def self_test(block, readme, first_line):
    import tempfile

    def run(commands, outputs):
        with tempfile.TemporaryDirectory() as logs:
            for c in commands:
                with open(f"{logs}/{c['n']:03d}.out", "w") as f:
                    f.write(outputs.get(c["n"], ""))
                open(f"{logs}/{c['n']:03d}.err", "w").close()
                with open(f"{logs}/{c['n']:03d}.rc", "w") as f:
                    f.write("0\n")
            lines = []
            return check(commands, logs, show=lines.append), "\n".join(lines)

    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    # The shapes the walkthrough uses, in a block of its own.
    sample = "\n".join([
        "A=1   # or -H \"Authorization: Bearer x\"",
        "curl -s $A/x     # {\"status\":\"error\",\"message\":\"a key is required: send it\",\"data\":null} (401)",
        "f() { python3 -c 'import sys; print(1)  # not a comment'; }",
        "X=$(curl -s $A -d '{",
        "  \"name\": \"#not-a-comment\", \"n\": 1}' | f)",
        "curl -s $A -H 'content-type: text/csv' \\",
        "  --data-binary @x.csv",
        "# {\"status\":\"success\",\"data\":{\"imported\":2,\"errors\":[{\"row\":3}],\"id\":\"…\"}}",
        "",
        "# a heading, not an answer: \"status\": \"ignored\"",
        "for i in $(seq 1 3); do echo \"$i\" >> more.csv; done",
        "sleep 1; curl -s $A/c   # \"status\": \"completed\", \"sent_count\": 62, started_at at the time",
        "curl -s \"$A/v?c=42\"   # 42",
        "curl -s -X DELETE $A/k/1   # revoked",
        "cat k.json   # {\"prefix\":\"wak_3f\",\"created_at\":\"…\",\"key\":\"wak_3f…\"}",
        "curl -s $A/k   # 401: the API key is not valid",
        "curl -s $A/r   # \"total\": what is left",
    ]) + "\n"
    cmds = plan(sample, "S", 1)
    expect([c["where"] for c in cmds] == ["S:1", "S:2", "S:3", "S:4", "S:6", "S:11", "S:12", "S:13", "S:14", "S:15", "S:16", "S:17"],
           f"commands split as {[c['where'] for c in cmds]}")
    labels = {c["where"]: [e["label"] for n in c["notes"] for e in n["checks"]] for c in cmds}
    expect(labels["S:1"] == [] and labels["S:3"] == [] and labels["S:4"] == [] and labels["S:17"] == [],
           f"prose or quoted # read as expectations: {labels}")
    expect(labels["S:2"][:1] == ['HTTP 401: the envelope\'s "status" is "error"'] and '"data": null' in labels["S:2"],
           f"401 line: {labels['S:2']}")
    expect(labels["S:6"] == ['"status": "success"', '"imported": 2', '"row": 3'], f"answer line: {labels['S:6']}")
    expect(labels["S:12"] == ['"status": "completed"', '"sent_count": 62'], f"end-of-line comment: {labels['S:12']}")
    expect([e["kind"] for n in cmds[9]["notes"] for e in n["checks"]] == ["prefix"], f"sample values: {labels['S:15']}")
    outputs = {
        2: '{"status":"error","message":"a key is required: send it","data":null}',
        5: '{"status":"success","data":{"imported":2,"duplicates":0,"errors":[{"row":3,"reason":"r"}],"id":"c1"}}',
        7: '{"status": "success", "data": {"status": "completed", "sent_count": 62}}',
        8: "42", 9: '{"status":"success","data":{"id":"k","revoked":true}}',
        10: '{"status":"success","data":{"prefix":"wak_9a","key":"wak_9a77"}}',
        11: '{"status":"error","message":"no","data":null}',
    }
    failed, text = run(cmds, outputs)
    expect(failed == 0, "canned answers that match fail:\n" + text)
    wrong = {**outputs, 7: '{"status":"success","data":{"status":"sending","sent_count":60}}', 8: "{}",
             9: '{"status":"success","data":{"revoked":false}}', 10: '{"data":{"prefix":"wak_1","key":"wak_2"}}',
             11: '{"status":"success","data":[]}'}
    failed, text = run(cmds, wrong)
    expect(failed == 6, "answers that do not match pass (want 6 failures):\n" + text)

    # The README's block: every command splits and runs through the checks, every check
    # passes a matching answer, and every written value, changed, makes its check fail.
    cmds = plan(block, readme, first_line)
    total = sum(len(n["checks"]) for c in cmds for n in c["notes"])
    expect(total > 0, f"{readme}: no expectations found in the walkthrough")
    good = {c["n"]: canned([e for n in c["notes"] for e in n["checks"]]) for c in cmds}
    failed, text = run(cmds, good)
    expect(failed == 0, f"{readme}: canned answers that match fail:\n" + text)
    lines = block.split("\n")
    mutations = 0
    for c in cmds:
        for note in c["notes"]:
            for e in note["checks"]:
                if e["kind"] != "field":
                    continue
                key, raw = FRAGMENT.match(e["source"]).groups()
                index = note["line"] - first_line
                changed = lines[index].replace(e["source"], e["source"][:-len(raw)] + altered(raw), 1)
                again = plan("\n".join(lines[:index] + [changed] + lines[index + 1:]), readme, first_line)
                failed, text = run(again, good)
                mutations += 1
                expect(failed == 1, f"{readme}:{note['line']}: with {e['label']} changed to {altered(raw)}, "
                                    f"the unchanged answer gives {failed} failures, not 1:\n{text}")
    for p in problems:
        print("self-test FAILED:", p, file=sys.stderr)
    if not problems:
        print(f"walkthrough checker self-test: the sample's checks pass and fail as they should; {readme}'s block: "
              f"{len(cmds)} commands, {total} expectations, each failing when its written value is changed ({mutations} values)")
    return 1 if problems else 0


def main(argv):
    if len(argv) == 6 and argv[1] == "plan":
        _, _, block, readme, first_line, logs = argv
        with open(block) as f:
            commands = plan(f.read(), readme, int(first_line))
        with open(f"{logs}/plan.json", "w") as f:
            json.dump(commands, f, indent=1, ensure_ascii=False)
        with open(f"{logs}/run.sh", "w") as f:
            f.write(driver(commands, logs))
        total = sum(len(n["checks"]) for c in commands for n in c["notes"])
        print(f"{readme}: {len(commands)} commands, {total} expectations in their comments")
        return 0 if total else 1
    if len(argv) == 3 and argv[1] == "check":
        with open(f"{argv[2]}/plan.json") as f:
            return 1 if check(json.load(f), argv[2]) else 0
    if len(argv) == 5 and argv[1] == "self-test":
        with open(argv[2]) as f:
            return self_test(f.read(), argv[3], int(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
