"""schemathesis hooks of the contract run (scripts/contract.sh): most generated `/api/...`
requests carry the local stack's API key and most generated webhook POSTs are signed with its
app secret, as Meta signs them, so that the routes themselves are exercised rather than only
the key and signature checks (the rest exercise those)."""

import hashlib
import hmac
import json
import os
import random

import schemathesis

SECRET = os.environ["CONTRACT_APP_SECRET"].encode()
API_KEY = os.environ["CONTRACT_API_KEY"]


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path.startswith("/api/") and random.random() < 0.9:
        case.headers = {**(case.headers or {}), "X-API-Key": API_KEY}
        return
    if case.method != "POST" or case.path != "/webhooks/whatsapp" or random.random() < 0.2:
        return
    if not isinstance(case.body, (bytes, dict, list, str, int, float, bool, type(None))):
        return  # no body at all
    if not isinstance(case.body, bytes):
        case.body = json.dumps(case.body).encode()
    signature = hmac.new(SECRET, case.body, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "X-Hub-Signature-256": f"sha256={signature}"}
