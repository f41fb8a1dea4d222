"""Uploads N generated CSV rows to a fresh campaign of the local stack with the presigned URL,
times the background import until it is completed, then times a plain BatchWriteItem of the
same N items (25 per request, 16 in flight, as the import writes) into the same emulator (a
table of their own with the same keys and indexes), and
prints the ratio and the local stack's peak memory growth (the import worker runs in it).
Then exports the campaign's N recipients (time to a completed file, its size, peak memory
growth) and deletes the campaign (time until the background jobs have removed every item);
with BENCH_UPLOAD_STEPS=import, stops after the import's figures."""
import concurrent.futures
import json
import os
import sys
import time
import urllib.request

import boto3

api, rows, stack_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "x-api-key": os.environ["LOCAL_API_KEY"]}
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())["data"]


def finished(path, every):
    """Polls a background task's GET until it is completed or failed; returns its last answer."""
    while True:
        answer = call("GET", path)
        if answer["status"] in ("completed", "failed"):
            return answer
        time.sleep(every)


def peak_rss_kb():
    with open(f"/proc/{stack_pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


account = call("POST", "/api/accounts", {"name": "Bench", "phone_number_id": "1", "business_account_id": "2",
                                         "access_token": "t", "messaging_limit_tier": "TIER_100K"})
template = call("POST", "/api/templates", {"account_id": account["id"], "name": "bench", "language": "en_US",
                                           "category": "MARKETING", "status": "APPROVED",
                                           "components": [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}]})
campaign = call("POST", "/api/campaigns", {"name": "Bench", "account_id": account["id"], "template_id": template["id"],
                                           "variable_mapping": {"1": "name", "2": "discount_code"}})
path = f"/api/campaigns/{campaign['id']}/recipients/uploads"
lines = ["phone_number,name,discount_code,city"]
lines += [f"+1415{2000000 + i:07d},Customer {i},CODE{i:06d},Springfield" for i in range(rows)]
csv = ("\n".join(lines) + "\n").encode()
del lines

rss_before = peak_rss_kb()
upload = call("POST", path, {"format": "csv"})
start = time.perf_counter()
# A content type of its own: urllib's default (a form) would make the emulator read the body as a form.
put = urllib.request.Request(upload["upload_url"], data=csv, method="PUT", headers={"content-type": "text/csv"})
urllib.request.urlopen(put, timeout=600).read()
put_s = time.perf_counter() - start
u = finished(f"{path}/{upload['upload_id']}", 0.2)
upload_s = time.perf_counter() - start
rss_after = peak_rss_kb()

# The same N items written with nothing else: BatchWriteItem, 25 per request, 16 in flight.
ddb = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ["AWS_ENDPOINT_URL"])
# Into a table of their own with the stack's keys and indexes (the same work per item), dropped
# afterwards: the emulator's queries read every item of a table, so leaving them beside the
# campaign's would slow the export and delete below by the bench's own doing.
main = ddb.describe_table(TableName=os.environ["TABLE_NAME"])["Table"]
plain_table = main["TableName"] + "-plain"
ddb.create_table(
    TableName=plain_table, KeySchema=main["KeySchema"], AttributeDefinitions=main["AttributeDefinitions"],
    BillingMode="PAY_PER_REQUEST",
    GlobalSecondaryIndexes=[{k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                            for g in main.get("GlobalSecondaryIndexes", [])])
pk = f"BENCH#{campaign['id']}"


def batch(first):
    items = [{"PutRequest": {"Item": {
        "PK": {"S": pk}, "SK": {"S": f"R#+1415{2000000 + i:07d}"}, "GSI2PK": {"S": pk + "#pending"},
        "GSI2SK": {"S": f"+1415{2000000 + i:07d}"}, "id": {"S": f"{i:036d}"}, "status": {"S": "pending"},
        "name": {"S": f"Customer {i}"}, "discount_code": {"S": f"CODE{i:06d}"}, "city": {"S": "Springfield"},
        "created_at": {"S": "2026-01-01T00:00:00Z"}}}} for i in range(first, min(first + 25, rows))]
    while items:
        out = ddb.batch_write_item(RequestItems={plain_table: items})
        items = out.get("UnprocessedItems", {}).get(plain_table, [])


start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(batch, range(0, rows, 25)))
plain_s = time.perf_counter() - start
ddb.delete_table(TableName=plain_table)

print(f"rows: {rows}, file: {len(csv) / 1e6:.1f} MB, PUT to the presigned URL: {put_s:.1f} s")
print(f"upload: {u['status']} in {upload_s:.1f} s (PUT included)  rows_read={u['rows_read']} imported={u['imported']} "
      f"duplicates={u['duplicates']} invalid={u['invalid']} {u.get('error', '')}")
print(f"plain BatchWriteItem of the same {rows} items: {plain_s:.1f} s  ratio upload/plain: {upload_s / plain_s:.2f}")
print(f"local stack peak RSS: {rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB after "
      f"(+{(rss_after - rss_before) / 1024:.0f} MB)")
print(f"total_recipients: {call('GET', '/api/campaigns/' + campaign['id'])['total_recipients']}")
if os.environ.get("BENCH_UPLOAD_STEPS") == "import":
    # The import alone (the export and delete of a million take another half hour here).
    sys.exit(0)

# The results export of the N recipients, written by the background jobs of the same stack.
rss_before = peak_rss_kb()
start = time.perf_counter()
export = call("POST", f"/api/campaigns/{campaign['id']}/exports", {})
e = finished(f"/api/campaigns/{campaign['id']}/exports/{export['export_id']}", 0.5)
export_s = time.perf_counter() - start
rss_after = peak_rss_kb()
size = 0
if e["status"] == "completed":
    with urllib.request.urlopen(e["download_url"], timeout=600) as r:
        while chunk := r.read(1 << 20):
            size += len(chunk)
print(f"export: {e['status']} in {export_s:.1f} s  rows={e['rows']}  file {size / 1e6:.1f} MB  "
      f"peak RSS {rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB after (+{(rss_after - rss_before) / 1024:.0f} MB)")

# The campaign deleted: gone for the API at once, its items removed in the background.
start = time.perf_counter()
req = urllib.request.Request(api + f"/api/campaigns/{campaign['id']}", method="DELETE",
                             headers={"x-api-key": os.environ["LOCAL_API_KEY"]})
urllib.request.urlopen(req, timeout=600).read()
answered_s = time.perf_counter() - start
partitions = [f"CAMPAIGN#{campaign['id']}#{k}" for k in range(32)] + [f"CAMPAIGN#{campaign['id']}"]


def left():
    return sum(ddb.query(TableName=main["TableName"], KeyConditionExpression="PK = :pk", Limit=1, Select="COUNT",
                         ExpressionAttributeValues={":pk": {"S": pk}})["Count"] for pk in partitions)


while left():
    time.sleep(2)
delete_s = time.perf_counter() - start
print(f"delete: answered in {answered_s:.2f} s; every item removed in {delete_s:.1f} s")
