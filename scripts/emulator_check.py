"""The emulator's own shortcuts (scripts/moto_server.py) against a model of DynamoDB.

moto_server.py answers queries its own way: index queries on a table with a stream from keys it
keeps per attribute value and moves on every write, main-table queries from the partition alone,
and plain update expressions without moto's expression walker. Every integration test leans on
these, so a wrong answer there could let a test pass or fail for the emulator's sake. This check
drives a table with a stream and one without through random writes of every kind the service
makes (put, update with SET/REMOVE/ADD, PartiQL UPDATE in a batch, transactions, batch writes,
deletes) and compares every index and partition query, whole and by key prefix, with what a
plain model of the items says: after every write, and page by page both ways after every tenth.

    python scripts/emulator_check.py ENDPOINT [--seed N] [--steps N]

The seed (default 1) makes a run repeatable; a failure prints the step, the write and the query.
"""

import argparse
import random
import sys
import uuid

import boto3

PARTITIONS = 4
SORTS = 40
VALUES = ["g0", "g1", "g2", "g3"]
# Page by page (many requests) after every so many writes; whole after each.
PAGED_EVERY = 10


def client(endpoint):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="check", aws_secret_access_key="check")


def create(db, name, stream):
    spec = dict(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ["PK", "SK", "G", "GS"]],
        GlobalSecondaryIndexes=[{
            "IndexName": "Idx",
            "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}, {"AttributeName": "GS", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
        BillingMode="PAY_PER_REQUEST",
    )
    if stream:
        spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    db.create_table(**spec)


class Model:
    """The items as DynamoDB would hold them: key -> {attribute: string or int}."""

    def __init__(self):
        self.items = {}

    def index(self, g, prefix=""):
        found = [(v["GS"], k) for k, v in self.items.items()
                 if v.get("G") == g and "GS" in v and v["GS"].startswith(prefix)]
        return sorted(found)

    def partition(self, pk, prefix=""):
        return sorted(k[1] for k in self.items if k[0] == pk and k[1].startswith(prefix))


def s(v):
    return {"S": v}


def key_of(k):
    return {"PK": s(k[0]), "SK": s(k[1])}


def item_of(k, g, gs, n):
    return {"PK": s(k[0]), "SK": s(k[1]), "G": s(g), "GS": s(gs), "N": {"N": str(n)}}


def write(db, table, model, rng):
    """One random write, applied to the table and to the model; returns what it was."""
    k = ("p%d" % rng.randrange(PARTITIONS), "s%02d" % rng.randrange(SORTS))
    g, gs, n = rng.choice(VALUES), "v%d" % rng.randrange(6), rng.randrange(100)
    op = rng.randrange(9)
    if op == 0:
        db.put_item(TableName=table, Item=item_of(k, g, gs, n))
        model.items[k] = {"G": g, "GS": gs, "N": n}
        return f"put {k} G={g} GS={gs}"
    if op == 1:
        db.update_item(TableName=table, Key=key_of(k), UpdateExpression="SET G = :g, GS = :s ADD N :n",
                       ExpressionAttributeValues={":g": s(g), ":s": s(gs), ":n": {"N": str(n)}})
        old = model.items.get(k, {})
        model.items[k] = {**old, "G": g, "GS": gs, "N": old.get("N", 0) + n}
        return f"update SET G={g}, GS={gs} ADD N {k}"
    if op == 2:
        db.update_item(TableName=table, Key=key_of(k), UpdateExpression="REMOVE G")
        model.items.setdefault(k, {}).pop("G", None)
        return f"update REMOVE G {k}"
    if op == 3:
        try:
            db.update_item(TableName=table, Key=key_of(k), UpdateExpression="SET G = :g",
                           ConditionExpression="attribute_exists(PK)", ExpressionAttributeValues={":g": s(g)})
        except db.exceptions.ConditionalCheckFailedException:
            assert k not in model.items, f"condition failed on an item that exists: {k}"
            return f"conditional update refused {k}"
        assert k in model.items, f"condition passed on an item that does not exist: {k}"
        model.items[k]["G"] = g
        return f"conditional update G={g} {k}"
    if op == 4:
        db.batch_execute_statement(Statements=[{
            "Statement": f'UPDATE "{table}" SET "G" = ? WHERE "PK" = ? AND "SK" = ?',
            "Parameters": [s(g), s(k[0]), s(k[1])],
        }])
        if k in model.items:  # a PartiQL UPDATE of a missing item writes nothing
            model.items[k]["G"] = g
        return f"PartiQL UPDATE G={g} {k}"
    if op == 5:
        other = ("p%d" % rng.randrange(PARTITIONS), "s%02d" % rng.randrange(SORTS))
        if other == k:
            other = (k[0], "s%02d" % ((int(k[1][1:]) + 1) % SORTS))
        db.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": item_of(k, g, gs, n)}},
            {"Update": {"TableName": table, "Key": key_of(other), "UpdateExpression": "SET GS = :s",
                        "ExpressionAttributeValues": {":s": s(gs)}}},
        ])
        model.items[k] = {"G": g, "GS": gs, "N": n}
        model.items.setdefault(other, {})["GS"] = gs
        return f"transaction put {k}, SET GS={gs} {other}"
    if op == 6:
        db.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item_of(k, g, gs, n)}}]})
        model.items[k] = {"G": g, "GS": gs, "N": n}
        return f"batch put {k}"
    if op == 7:
        db.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key_of(k)}}]})
        model.items.pop(k, None)
        return f"batch delete {k}"
    db.delete_item(TableName=table, Key=key_of(k))
    model.items.pop(k, None)
    return f"delete {k}"


def pages(db, limit, forward, **query):
    """Every item a query answers, following LastEvaluatedKey `limit` at a time."""
    got, start = [], None
    for _ in range(1000):
        extra = {"ExclusiveStartKey": start} if start else {}
        r = db.query(Limit=limit, ScanIndexForward=forward, **query, **extra)
        got += r["Items"]
        start = r.get("LastEvaluatedKey")
        if not start:
            return got
    raise AssertionError("a query that never ends")


def condition(key, value, sort, prefix):
    """A KeyConditionExpression on `key` = `value`, with `sort` beginning with `prefix` if any."""
    cond, values = f"{key} = :k", {":k": s(value)}
    if prefix:
        cond, values = cond + f" AND begins_with({sort}, :p)", {**values, ":p": s(prefix)}
    return {"KeyConditionExpression": cond, "ExpressionAttributeValues": values}


def check(db, table, model, paged):
    """Every index and partition query against the model, whole and (when `paged`) a few items
    a page both ways; returns the first difference."""
    modes = [(1000, True)] + ([(3, True), (3, False)] if paged else [])
    for g in VALUES:
        for prefix in ["", "v1"]:
            want = model.index(g, prefix)
            for limit, forward in modes:
                items = pages(db, limit, forward, TableName=table, IndexName="Idx", **condition("G", g, "GS", prefix))
                got = [(i["GS"]["S"], (i["PK"]["S"], i["SK"]["S"])) for i in items]
                # Items with the same index key come in no order DynamoDB promises.
                if sorted(got) != want or [x[0] for x in got] != sorted((x[0] for x in want), reverse=not forward):
                    return f"index G={g} prefix '{prefix}' limit {limit} forward {forward}: got {got}, want {want}"
    for p in range(PARTITIONS):
        pk = "p%d" % p
        for prefix in ["", "s1"]:
            want = model.partition(pk, prefix)
            for limit, forward in modes:
                items = pages(db, limit, forward, TableName=table, **condition("PK", pk, "SK", prefix))
                got = [i["SK"]["S"] for i in items]
                if got != (want if forward else want[::-1]):
                    return f"partition {pk} prefix '{prefix}' limit {limit} forward {forward}: got {got}, want {want}"
                for i in items:
                    held = model.items[(pk, i["SK"]["S"])]
                    shown = {a: (int(v["N"]) if "N" in v else v["S"]) for a, v in i.items() if a not in ("PK", "SK")}
                    if shown != held:
                        return f"item {(pk, i['SK']['S'])}: got {shown}, want {held}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("endpoint")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    db = client(args.endpoint)
    failed = False
    for stream in (True, False):
        table = f"emulator-check-{'stream' if stream else 'plain'}-{uuid.uuid4().hex[:8]}"
        create(db, table, stream)
        rng, model = random.Random(args.seed), Model()
        try:
            # An index query before any write, so that the kept keys exist while the writes come.
            check(db, table, model, paged=True)
            for step in range(args.steps):
                what = write(db, table, model, rng)
                diff = check(db, table, model, paged=step % PAGED_EVERY == PAGED_EVERY - 1)
                if diff:
                    print(f"{table}: after step {step} ({what}): {diff}", file=sys.stderr)
                    failed = True
                    break
            else:
                print(f"{table}: {args.steps} writes, every query as the model says")
        finally:
            db.delete_table(TableName=table)
    if failed:
        print(f"to replay: python scripts/emulator_check.py ENDPOINT --seed {args.seed} --steps {args.steps}",
              file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
