"""Imports N generated CSV rows into a fresh campaign of the local stack and prints the figures."""
import json
import os
import sys
import time
import urllib.request

api, rows = sys.argv[1], int(sys.argv[2])


def call(method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": content_type, "x-api-key": os.environ["LOCAL_API_KEY"]}
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["data"]


account = call("POST", "/api/accounts", {"name": "Bench", "phone_number_id": "1", "business_account_id": "2",
                                         "access_token": "t", "messaging_limit_tier": "TIER_100K"})
template = call("POST", "/api/templates", {"account_id": account["id"], "name": "bench", "language": "en_US",
                                           "category": "MARKETING", "status": "APPROVED",
                                           "components": [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}]})
campaign = call("POST", "/api/campaigns", {"name": "Bench", "account_id": account["id"], "template_id": template["id"],
                                           "variable_mapping": {"1": "name", "2": "discount_code"}})
lines = ["phone_number,name,discount_code,city"]
for i in range(rows):
    lines.append(f"+1415{2000000 + i:07d},Customer {i},CODE{i:06d},Springfield")
csv = ("\n".join(lines) + "\n").encode()
path = f"/api/campaigns/{campaign['id']}/recipients/import"

start = time.perf_counter()
result = call("POST", path, csv, "text/csv")
first = time.perf_counter() - start
start = time.perf_counter()
again = call("POST", path, csv, "text/csv")
second = time.perf_counter() - start

print(f"rows: {rows}, body: {len(csv) / 1e6:.1f} MB")
print(f"first import:  {first:.1f} s  imported={result['imported']} duplicates={result['duplicates']} invalid={result['invalid']}")
print(f"same file again (all duplicates): {second:.1f} s  imported={again['imported']} duplicates={again['duplicates']}")
print(f"total_recipients: {call('GET', '/api/campaigns/' + campaign['id'])['total_recipients']}")
