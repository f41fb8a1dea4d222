"""schemathesis hooks of the contract run (scripts/contract.sh): most generated `/api/...`
requests carry the local stack's API key and most generated webhook POSTs are signed with its
app secret, as Meta signs them, so that the routes themselves are exercised rather than only
the key and signature checks (the rest exercise those).

The key is given as schemathesis auth (an auth provider, not a header a hook adds), so that
schemathesis knows it for a real credential: the requests it builds to test authentication
keep their auth as it built them (its negative cases that drop or spoil `X-API-Key` or
`Authorization` get no key; `ignored_auth`'s probes are sent without any hook), and
`ignored_auth` checks that the key is enforced instead of taking it for a generated one.

Every random choice comes from `random.Random`s seeded from CONTRACT_SEED (the seed
contract.sh passes to schemathesis as `--seed`), one per operation and purpose, so a seed
replays a run, hooks included."""

import hashlib
import hmac
import os
import random

import requests
import schemathesis

SECRET = os.environ["CONTRACT_APP_SECRET"].encode()
API_KEY = os.environ["CONTRACT_API_KEY"]
SEED = int(os.environ["CONTRACT_SEED"])

KEYED = 0.9  # share of `/api/...` requests that carry the key
SIGNED = 0.8  # share of webhook POSTs that are signed

_streams = {}


def chance(purpose, operation):
    """The next number in [0, 1) of this purpose's stream for this operation."""
    key = (purpose, operation.label)
    if key not in _streams:
        _streams[key] = random.Random(f"{SEED}/{purpose}/{operation.label}")
    return _streams[key].random()


@schemathesis.auth(refresh_interval=None).apply_to(path_regex="^/api/")
class ApiKey:
    # schemathesis does not ask for auth on a case it built to test auth (one whose
    # X-API-Key or Authorization it removed or made invalid), so none is added there.
    def get(self, case, context):
        return API_KEY if chance("key", context.operation) < KEYED else None

    def set(self, case, data, context):
        if case.headers is None:
            case.headers = {}
        case.headers["X-API-Key"] = data


def sent_body(case):
    """The bytes the case's body goes out as: schemathesis's serialization, then requests'. The
    case itself is left as generated: a body replaced here would be validated against the
    contract again, and its bytes are not the JSON object the contract asks for."""
    kwargs = case.as_transport_kwargs(base_url="http://127.0.0.1")
    body = requests.Request(kwargs["method"], kwargs["url"], data=kwargs.get("data"), json=kwargs.get("json")).prepare().body
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else body


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method != "POST" or case.path != "/webhooks/whatsapp" or chance("signature", case.operation) >= SIGNED:
        return
    signature = hmac.new(SECRET, sent_body(case), hashlib.sha256).hexdigest()
    if case.headers is None:
        case.headers = {}
    case.headers["X-Hub-Signature-256"] = f"sha256={signature}"
