"""Seeds a running local stack for the contract run of scripts/test.sh, and writes the
schemathesis configuration that points the generated requests at the seeded data.

Without it nearly every generated id names nothing, and the handlers behind the 404 are never
reached. With it, about half of the ids in paths and bodies are real: accounts, approved and
pending templates, and campaigns in every status (draft with and without recipients,
scheduled, sending, paused, completed, cancelled), so starts, pauses, imports, updates and
deletes run against real state.

Usage: contract_seed.py BASE_URL CONFIG_OUT VERIFY_TOKEN
"""

import json
import os
import sys
import time
import urllib.request

BASE, OUT, VERIFY_TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("x-api-key", os.environ["CONTRACT_API_KEY"])
    if data is not None:
        req.add_header("content-type", content_type)
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)["data"]


def account(n):
    return call("POST", "/api/accounts", {
        "name": f"Seed {n}", "phone_number_id": f"10654035224292{n}", "business_account_id": "102290129340398",
        "access_token": "EAAG-seed", "messaging_limit_tier": "TIER_1K"})["id"]


def template(account_id, name, text, status="APPROVED"):
    return call("POST", "/api/templates", {
        "account_id": account_id, "name": name, "language": "en_US", "category": "MARKETING", "status": status,
        "components": [{"type": "BODY", "text": text}]})["id"]


def campaign(account_id, template_id, mapping, recipients=0, scheduled_at=None, first=0):
    c = call("POST", "/api/campaigns", {
        "name": "Seeded", "account_id": account_id, "template_id": template_id,
        "variable_mapping": mapping, "scheduled_at": scheduled_at})["id"]
    if recipients:
        rows = "".join(f"+1415555{first + i:04d},Name {i}\n" for i in range(recipients))
        call("POST", f"/api/campaigns/{c}/recipients/import", ("phone_number,name\n" + rows).encode(), "text/csv")
    return c


accounts, templates, campaigns = [], [], []
for n in range(2):
    a = account(n)
    sale = template(a, f"sale_{n}", "Our sale starts today")
    hello = template(a, f"hello_{n}", "Hi {{1}}, our sale starts today")
    templates += [sale, hello, template(a, f"pending_{n}", "Soon", "PENDING")]
    accounts.append(a)
    first = 1000 * n
    drafts = [campaign(a, sale, {}, 3, first=first), campaign(a, hello, {"1": "name"}, 3, first=first),
              campaign(a, sale, {})]
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    scheduled = campaign(a, sale, {}, 2, scheduled_at=later, first=first + 100)
    call("POST", f"/api/campaigns/{scheduled}/start")
    sending = campaign(a, sale, {}, 20, first=first + 200)
    call("POST", f"/api/campaigns/{sending}/start")
    paused = campaign(a, hello, {"1": "name"}, 20, first=first + 300)
    call("POST", f"/api/campaigns/{paused}/start")
    call("POST", f"/api/campaigns/{paused}/pause")
    cancelled = campaign(a, sale, {}, 2, first=first + 400)
    call("POST", f"/api/campaigns/{cancelled}/cancel")
    done = campaign(a, sale, {}, 1, first=first + 500)
    call("POST", f"/api/campaigns/{done}/start")
    campaigns += drafts + [scheduled, sending, paused, cancelled, done]


def values(ids):
    return "[" + ", ".join(json.dumps(i) for i in ids) + "]"


def binding(name, probability=0.5):
    return f'{{ dictionary = "{name}", probability = {probability} }}'


with open(OUT, "w") as f:
    f.write(f"""# Written by scripts/contract_seed.py for one contract run; not kept.
[dictionaries.accounts]
values = {values(accounts)}

[dictionaries.templates]
values = {values(templates)}

[dictionaries.campaigns]
values = {values(campaigns)}

[dictionaries.verify_token]
values = {values([VERIFY_TOKEN])}

# Every answer: no 5xx, and a status, content type and body the contract documents. Every
# request the contract forbids is refused, and the API key is enforced where it is required.
# (Here rather than on the command line, where they would override the per-operation settings.)
[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
negative_data_rejection.enabled = true
ignored_auth.enabled = true

[phases.stateful]
max-steps = 10

# The first block that applies to an operation decides its parameters.
[[operations]]
include-operation-id = "updateCampaign"
parameters = {{ "path.id" = {binding("campaigns")}, "body.account_id" = {binding("accounts")}, "body.template_id" = {binding("templates")} }}

[[operations]]
include-path-regex = "^/api/accounts/"
parameters = {{ "path.id" = {binding("accounts")} }}

[[operations]]
include-path-regex = "^/api/templates/"
parameters = {{ "path.id" = {binding("templates")} }}

[[operations]]
include-path-regex = "^/api/campaigns/"
parameters = {{ "path.id" = {binding("campaigns")} }}

[[operations]]
include-operation-id = ["createTemplate", "listTemplates", "listCampaigns"]
parameters = {{ "body.account_id" = {binding("accounts", 0.8)}, "query.account_id" = {binding("accounts")} }}

[[operations]]
include-operation-id = "verifyWebhook"
parameters = {{ "query.hub.verify_token" = {binding("verify_token", 0.7)} }}

[[operations]]
include-operation-id = "createCampaign"
parameters = {{ "body.account_id" = {binding("accounts", 0.8)}, "body.template_id" = {binding("templates", 0.8)} }}

# Checks per operation (these blocks add to the ones above). A JSON import takes recipients that
# break the per-recipient limits of the contract and counts them invalid, listing them in its
# answer, while it imports the others: such a request is accepted by design, not refused.
[[operations]]
include-operation-id = "importRecipients"
checks.negative_data_rejection.enabled = false
""")
print(f"seeded {len(accounts)} accounts, {len(templates)} templates, {len(campaigns)} campaigns")
