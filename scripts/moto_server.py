"""Runs moto_server (the AWS emulator of the local stack) with fixes to its speed, applied in
this process only; what each request answers is unchanged, but for BatchExecuteStatement and
DynamoDB Streams, whose notes below say what differs from moto.

- The server speaks HTTP/1.1 with keep-alive: under HTTP/1.0 (werkzeug's default) every
  request opened a connection and started a thread.
- Requests are not logged one line each (under load the log's lock was a fifth of the time);
  warnings and errors still are.
- Which service a request is for is no longer decided by listing moto's package directory on
  disk for every request.
- A condition or filter expression is parsed once per expression, names and values, and an
  update expression once per expression, not for every item they are used on (a transaction
  of 50 claims parsed the same condition three times per item). The parsed condition is only
  read when checked; moto copies a parsed update expression before it fills it in.
- The walkers over a parsed update expression build their table of node types once, not once
  per node visited.
- moto checks every update expression against ten rules for every item it writes; three of
  them (how many clauses of each kind, overlapping paths, no key attribute changed) read only
  the expression and its attribute names, and now run once per expression and names (the
  others, which read the item or the values, still run every time).
- A plain update expression — `SET a = :v`, `SET a = b + :v` (or `-`), `REMOVE a`, `ADD a :n`
  on top-level attributes, no functions, nested paths or list elements; every update the
  service writes — is applied directly to the item: the same checks as moto's (names and
  values given, no reserved word as a bare name, no key attribute changed, operands numbers,
  index keys of their declared type and not empty, the item as written within 400 KB — moto
  also counted the value being replaced, DynamoDB does not) and the same result, without copying, walking and rewriting the parsed expression for every item (with
  the three checks above, half of a transaction's time). Anything else, and any plain update
  that fails one of those checks, goes through moto as before, which answers the error.
- Every item an update expression writes starts with a deep copy of the parsed expression;
  its nodes now copy themselves attribute by attribute instead of through copy's generic
  reduce-and-reconstruct path (the same copy, a few times faster).

- moto handles concurrent DynamoDB requests without a lock, so a transaction that backs up
  a table while another request writes it fails now and then with a 500. Here DynamoDB
  requests run one at a time (moto runs Python code under one interpreter lock anyway).
- Before a TransactWriteItems, moto deep-copies the whole table once for every item of the
  request, to roll back if a condition fails: a 100-item transaction on a table of a few
  thousand items takes seconds. Here the conditions are checked first, without writing;
  when one fails the transaction is cancelled as moto would cancel it, and when all hold it
  is applied without the copies (requests run one at a time, so nothing changes between the
  check and the writes).

- A Query sorted every item of the table (a Python comparison per pair) and then walked them
  all, skipping the previous pages item by item: at a million recipients one page took tens
  of seconds. Here a query on the table's own keys reads only its partition (as DynamoDB does)
  and starts after ExclusiveStartKey by bisection. moto keeps no index: a query on one read
  every item of the table, and a dispatch step at 200 msg/s (about twenty index queries, one
  per recipient shard it reads) held the emulator longer the bigger the table grew (0.5-0.7 s
  at a few tens of thousands of items; in a send benchmark of five campaigns, the last one's
  claims waited behind them). Here, on a table with a stream, the keys of the items that have
  each string value of an attribute an index query asked for are kept, from the first such
  query on, and moved on every write (put, update, delete, in whatever request: the stream's
  hook sees them all, whether or not a record is kept): a query on the index's partition key
  reads only those items, as DynamoDB reads only the index's partition. On a table without a
  stream, and for a key that is not a string, it reads every item as before, comparing plain
  values (moto's own filter called DynamoType's methods for each). What matched is sorted and
  filtered by moto as before.

- The answer of a Query, Scan, GetItem, BatchGetItem, BatchExecuteStatement or (DynamoDB
  Streams) GetRecords is written as JSON directly: it is already in DynamoDB's wire form
  (attribute values as `{"S": …}`; a record's creation time as epoch seconds), and moto's
  serializer, which walks the API model for every attribute of every item, took three
  quarters of the time of a page of 3,000 recipients, and 1.7 s for a GetRecords of 1,000
  records (0.07 s now) while every other DynamoDB request waited. Other answers, and errors,
  go through moto's serializer.

- moto answers each statement of a BatchExecuteStatement by converting every item of every
  table, and of each of its indexes, to JSON and running the statement over that copy: one
  UPDATE on a table of 100,000 recipients with one index took 11-15 seconds. Nor does it read
  the terms of a WHERE clause beyond the key as a condition: an UPDATE whose condition does
  not hold was answered as a success (and not applied), and so was one of an item that does
  not exist. Here an UPDATE of the form the service sends — `UPDATE "t" SET "a" = ? REMOVE "b"
  WHERE "PK" = ? AND "SK" = ? AND <condition>`: SET and REMOVE clauses of one top-level
  attribute each, at least one, in any order; each of the table's key attributes compared
  with `=` once among the WHERE clause's top-level AND terms; a condition of `=`, `<>`, `<`,
  `<=`, `>`, `>=` against a parameter, `IS MISSING`, `IS NOT MISSING`, AND, OR and
  parentheses; every name double-quoted, every value a `?` parameter — is applied with moto's
  update_item (half a millisecond on that table): the update expression of its SET and REMOVE
  clauses, and the condition `attribute_exists` of the key AND the rest of the WHERE clause
  (`IS MISSING` as `attribute_not_exists`), since a PartiQL UPDATE never creates an item. The
  update paths above, their checks and the table's stream apply to it. Each statement
  succeeds or fails on its own, as on DynamoDB: a condition that does not hold, or an item
  that does not exist, answers ConditionalCheckFailed (with the item when the statement asks
  for ReturnValuesOnConditionCheckFailure ALL_OLD); any other error of moto's, a wrong number
  of parameters or a key of the wrong type answers ValidationError. Each statement's text is
  parsed once. Any other statement goes through moto's PartiQL as before.
- moto took a BatchExecuteStatement of any number of statements; DynamoDB refuses one of more
  than 25 with a ValidationException, and so does this one.

- With a stream on the table, moto turned both images of every write into JSON, and the whole
  record once more into a JSON string only to measure its size, and kept every record for as
  long as it ran (importing a million recipients kept a million records). Here only the
  records the service's Lambda event-source filter would pass are kept: a MODIFY whose new
  image has a `tally` of a value the old image does not have (another value, or none). On AWS
  the stream holds every change and the filter drops the others before the function is
  invoked; here they are not recorded. MOTO_STREAM_ONLY_CHANGED names the attribute (default
  `tally`; empty: every record is kept, as moto does).
- A record's SizeBytes is the size of its keys and images counted as DynamoDB counts an
  item's size (moto's, the length of the record's JSON, was an overestimate), without writing
  the record out.
- A record older than 10 minutes is dropped from the front of the shard (AWS keeps 24 hours),
  a second's worth at a time, as records are added or read. The shard's first sequence number
  moves with them, so that a record keeps its number and moto's iterators, which find a
  record by its number minus the first one, still find it. A TRIM_HORIZON iterator reads from
  the oldest record kept; an iterator whose place was dropped fails with
  TrimmedDataAccessException, as on AWS after 24 hours.
- Every GetRecords returns a new shard iterator, which moto kept for as long as it ran (a
  consumer polling four times a second would leave 350,000 a day, over a kilobyte each). An
  iterator is dropped 15 minutes after it was issued, when AWS expires it; using it then
  fails with ExpiredIteratorException.
- moto's StreamShard.add also hands every record to the table's Lambda event-source mappings
  (importing moto's Lambda models for the first one). The table has none: that is only looked
  at for a record kept, and skipped when there are none.
- DynamoDB Streams requests run one at a time with the DynamoDB ones, since a write trims the
  shard a GetRecords reads.

- SQS walks every message of a queue for each receive, each delete and each wait, reading the
  clock through datetime arithmetic twice per message, and a delete walks the queue twice per
  receipt handle. With a backlog of a few thousand messages (status webhooks at a high send
  rate) a request took tens of milliseconds and the queue fell further behind. Here the clock
  is read with time.time() (the same UTC epoch milliseconds), a queue's visible messages are
  found with one clock read, and a batch delete walks the queue once for all its handles.
- moto's SQS takes no lock around a delete, which writes the queue's list of messages anew
  without the deleted ones: a message sent meanwhile was lost, and of two deletes at once one
  was undone (its message came back when its visibility timeout ended, minutes later, so a
  status webhook was applied minutes late or, lost, never). Here a delete holds the queue's
  lock, which a send already takes. (Two receives at once may still hand out the same
  message, as SQS may: every consumer takes a message delivered twice.)
- A receive checked each message it handed out against the queue's retention period by
  computing every attribute of the queue, the approximate counts included (two more walks of
  every message): three quarters of the emulator's time at 600 status webhooks a second. Here
  the retention period is read from the queue itself. The approximate counts (which moto
  also computes for every message sent, through the same attributes) read the clock once.

- Python's full garbage collection walks every object the process holds, the tables' items
  included: with the tables of a send benchmark it paused the emulator for 130–290 ms every
  few seconds (a pause longer than a second's worth of slots ahead at 200 msg/s). Every two
  seconds what is alive is frozen out of the collector's reach (gc.freeze): a collection then
  walks what was made since (6–30 ms). Reference counting still frees everything that is
  dropped; only a cycle of objects frozen alive and dropped later stays in memory.

With MOTO_SLOW_MS set (e.g. 100), a DynamoDB request that waited for or held the lock above
longer than that is written to the log with its action, and so is any pause of the whole
process (a 10 ms sleep waking 80 ms late): which of the two made an answer slow shows there.

One setting differs from AWS, for the tests: S3 takes multipart parts from 1 KiB (AWS: 5 MiB),
so that an export written in several parts, and resumed between two of them, is shown on a few
hundred recipients. The export's own part size (EXPORT_PART_BYTES, 8 MiB by default) is what
AWS gets.
"""

import bisect
import copy
import functools
import datetime
import gc
import json
import logging
import os
import re
import sys
import threading
import time

# Read by moto's settings when they are imported (below).
os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", "1024")

import moto.backends as moto_backends

import moto.dynamodb.comparisons as dynamodb_comparisons
import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.models.table as dynamodb_table
import moto.dynamodbstreams.models as dynamodbstreams_models
import moto.sqs.models as sqs_models
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, bytesize
from moto.dynamodb.parsing.executors import UpdateExpressionExecutor as _UpdateExpressionExecutor
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator, UpdateExpressionValidator
from moto.dynamodb.parsing.validators import UpdateHashRangeKeyValidator
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.exceptions import ConditionalCheckFailed, MockValidationException, TransactionCanceledException
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.server import main
from werkzeug.serving import WSGIRequestHandler

_lock = threading.RLock()
_local = threading.local()


_parse_filter_expression = dynamodb_comparisons.get_filter_expression
_parsed: dict = {}


def get_filter_expression(expr, names, values):
    if expr is None:
        return _parse_filter_expression(expr, names, values)
    key = (expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
    op = _parsed.get(key)
    if op is None:
        op = _parse_filter_expression(expr, names, values)
        if len(_parsed) > 10_000:
            _parsed.clear()
        _parsed[key] = op
    return op


class _ParsedCondition:
    """Stands in for moto's condition parser where only the parsed expression is used."""

    def __init__(self, expr, names, values):
        self.op = get_filter_expression(expr, names, values)

    def parse(self):
        return self.op


_parse_update_expression = UpdateExpressionParser.make


# The text of each parsed update expression (by the parsed object's identity; every one comes
# from the cache below, which keeps it alive).
_source: dict = {}


@functools.lru_cache(maxsize=4096)
def _parsed_update_expression(expr):
    parsed = _parse_update_expression(expr)
    _source[id(parsed)] = expr
    return parsed


def _processors(self):
    table = self.__dict__.get("_fixed_processors")
    if table is None:
        table = self.__dict__["_fixed_processors"] = list(self._processing_map().items())
    return table


def _nodes_to_be_processed(self):
    types = self.__dict__.get("_fixed_node_types")
    if types is None:
        types = self.__dict__["_fixed_node_types"] = tuple(node_type for node_type, _ in _processors(self))
    return types


def _process(self, node):
    for node_type, processor in _processors(self):
        if isinstance(node, node_type):
            return processor(node)


# The checks of an update expression that read only the expression, its attribute names and
# the table's key attributes (not the item, not the values): the first three of moto's
# processors (see UpdateExpressionValidator.get_ast_processors).
_EXPRESSION_ONLY_CHECKS = 3
# The parsed expressions (the cached objects, by identity) that passed those checks with these
# names on a table with these keys.
_passed: dict = {}
_validator_init = UpdateExpressionValidator.__init__
_validator_validate = UpdateExpressionValidator.validate


def _validator_key(expression, names, table):
    return (id(expression), tuple(sorted((names or {}).items())), tuple(table.table_key_attrs))


def _init_validator(self, expression, expression_attribute_names, expression_attribute_values, item, table):
    _validator_init(self, expression, expression_attribute_names, expression_attribute_values, item, table)
    key = _validator_key(expression, expression_attribute_names, table)
    if _passed.get(key) is expression:
        self.processors = self.processors[_EXPRESSION_ONLY_CHECKS:]
    else:
        checks = [type(p) for p in self.processors[:_EXPRESSION_ONLY_CHECKS]]
        if checks == [ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator]:
            self._passes = (key, expression)


def _validate(self):
    node = _validator_validate(self)
    passes = self.__dict__.pop("_passes", None)
    if passes is not None:
        _passed[passes[0]] = passes[1]
    return node


_NAME = r"#?[A-Za-z_][A-Za-z0-9_]*"
_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)
_SET_VALUE = re.compile(rf"({_NAME})\s*=\s*(:[A-Za-z0-9_]+)")
_SET_SUM = re.compile(rf"({_NAME})\s*=\s*({_NAME})\s*([+-])\s*(:[A-Za-z0-9_]+)")
_ADD_NUMBER = re.compile(rf"({_NAME})\s+(:[A-Za-z0-9_]+)")
_ITEM_SIZE_LIMIT = 405000  # moto's (LimitedSizeDict)


@functools.lru_cache(maxsize=4096)
def _plain_actions(expr):
    """The actions of a plain update expression (see the module's notes), or None."""
    if any(c in expr for c in "().[]"):
        return None
    parts = _CLAUSE.split(expr)
    if parts[0].strip():
        return None
    actions, clauses = [], set()
    for clause, body in zip(parts[1::2], parts[2::2]):
        clause = clause.upper()
        if clause in clauses:
            return None
        clauses.add(clause)
        for part in (p.strip() for p in body.split(",")):
            if clause == "SET" and (m := _SET_VALUE.fullmatch(part)):
                actions.append(("set", m[1], m[2]))
            elif clause == "SET" and (m := _SET_SUM.fullmatch(part)):
                actions.append(("sum", m[1], m[4], m[2], m[3]))
            elif clause == "REMOVE" and re.fullmatch(_NAME, part):
                actions.append(("remove", part, None))
            elif clause == "ADD" and (m := _ADD_NUMBER.fullmatch(part)):
                actions.append(("add", m[1], m[2]))
            else:
                return None
    return tuple(actions) or None


@functools.lru_cache(maxsize=1)
def _reserved_words():
    return frozenset(ReservedKeywords.get_reserved_keywords())


def _size(attrs):
    return sum(v.size() if type(v) is DynamoType else bytesize(str(v)) for v in [*attrs.keys(), *attrs.values()])


class _PlainUpdate:
    """A plain update's new attribute values (None: removed), checked against one item."""

    def __init__(self, writes):
        self.writes = writes

    def normalize(self):
        pass


def _plain_update(expression, names, values, item, table):
    """The writes of `expression` on `item` when it is plain and passes moto's checks, else None."""
    actions = _plain_actions(_source.get(id(expression), "("))
    if actions is None or _passed.get(_validator_key(expression, names, table)) is not expression:
        return None
    names, values = names or {}, values or {}
    reserved = _reserved_words()
    declared = {a["AttributeName"]: a["AttributeType"] for a in table.attr}
    index_keys = set(table.attribute_keys)

    def name(n):
        if n.startswith("#"):
            return names.get(n)
        return None if n.upper() in reserved else n

    def value(v):
        raw = values.get(v)
        return None if raw is None else DynamoType(raw)

    writes = []
    for op, target, operand, source, sign in ((*a, None, None)[:5] for a in actions):
        target = name(target)
        if target is None or target in table.table_key_attrs:
            return None
        if op == "remove":
            writes.append((target, None))
            continue
        new = value(operand)
        if new is None:
            return None
        if op in ("sum", "add"):
            if op == "sum":
                source = name(source)
                current = None if source is None else item.attrs.get(source)
            else:
                current = item.attrs.get(target, DynamoType({"N": "0"}))
            if current is None or current.type != "N" or new.type != "N":
                return None
            new = current - new if sign == "-" else current + new
        if target in declared and new.type != declared[target]:
            return None
        if target in index_keys and new.type in ("S", "B") and new.value == "":
            return None
        writes.append((target, new))
    return _PlainUpdate(writes)


class _UpdateValidator:
    """Stands in for UpdateExpressionValidator inside moto's DynamoDB models: a plain update is
    checked and planned here, anything else by moto."""

    def __init__(self, expression, expression_attribute_names=None, expression_attribute_values=None, item=None,
                 table=None):
        self.args = (expression, expression_attribute_names, expression_attribute_values, item, table)

    def validate(self):
        return _plain_update(*self.args) or UpdateExpressionValidator(*self.args).validate()


def _update_executor(validated, item, names):
    if not isinstance(validated, _PlainUpdate):
        return _UpdateExpressionExecutor(validated, item, names)

    class Apply:
        def execute(self):
            attrs = dict(item.attrs)
            for target, new in validated.writes:
                if new is None:
                    attrs.pop(target, None)
                else:
                    attrs[target] = new
            if _size(attrs) > _ITEM_SIZE_LIMIT:
                raise ItemSizeTooLarge
            item.attrs.clear()
            dict.update(item.attrs, attrs)

    return Apply()


class _NoTableBackups:
    """Stands in for the `copy` module inside moto's DynamoDB models."""

    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, obj, memo=None):
        if getattr(_local, "checked", False) and type(obj).__name__ == "Table":
            return obj
        return copy.deepcopy(obj, memo)


def _failed_conditions(backend, transact_items):
    """moto's per-item outcome list when a condition fails, else None."""
    outcomes, failed = [], False
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            outcomes.append(("ConditionalCheckFailed", "The conditional request failed", old))
            failed = True
        else:
            outcomes.append((None, None, None))
    return outcomes if failed else None


_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    try:
        failed = _failed_conditions(self, transact_items)
    except Exception:
        # A malformed request: moto's own code answers it, with its backups.
        return _transact_write_items(self, transact_items)
    if failed:
        raise TransactionCanceledException(failed)
    _local.checked = True
    try:
        return _transact_write_items(self, transact_items)
    finally:
        _local.checked = False



_table_query = dynamodb_table.Table.query


# Index queries: which items have an attribute of a given string value, kept per attribute an
# index query asked for and updated on every write (see the module's notes).

def _index_keys(table, condition):
    """The keys (hash, range) of the items whose attribute `name` is the string asked for, or
    None when they are not kept for this table: it has no stream, whose hook sees every write."""
    name, wanted = condition
    shard = table.stream_shard
    if shard is None or wanted.type != "S":
        return None
    kept = table.__dict__.get("_values_kept")
    if kept is None or kept[0] is not shard:
        kept = table.__dict__["_values_kept"] = (shard, {})
    values = kept[1].get(name)
    if values is None:
        values = kept[1][name] = {}
        for item in _items(table):
            _keep(values, name, None, item)
    return list(values.get(wanted.value, ()))


def _items(table):
    """Every item of the table, in no order (moto's all_items sorts them)."""
    if table.range_key_attr:
        return (item for part in table.items.values() for item in part.values())
    return iter(table.items.values())


def _string_value(item, name):
    value = item.attrs.get(name) if item is not None else None
    return value.value if value is not None and value.type == "S" else None


def _keep(values, name, old, new):
    """Moves the key of an item written from `old` to `new` (either None) in `values`, the map
    from attribute `name`'s string value to the keys of the items that have it."""
    before, after = _string_value(old, name), _string_value(new, name)
    if before == after:
        return
    item = new if new is not None else old
    key = (item.hash_key, item.range_key)
    if before is not None:
        keys = values.get(before)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del values[before]
    if after is not None:
        values.setdefault(after, {})[key] = None


def _note_write(shard, old, new):
    kept = shard.table.__dict__.get("_values_kept")
    if kept is not None and kept[0] is shard:
        for name, values in kept[1].items():
            _keep(values, name, old, new)


def _item_at(table, key):
    part = table.items.get(key[0])
    if part is None or not table.range_key_attr:
        return part
    return part.get(key[1])


def _string_keys(items):
    return all(item.range_key is not None and item.range_key.type == "S" for item in items)


def table_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
                projection_expressions, index_name=None, *args, **kwargs):
    """moto's Table.query over only the items it can answer with (see the module's notes)."""
    if index_name:
        conditions = kwargs.get("hash_key_conditions") or []
        keys = _index_keys(self, conditions[0]) if len(conditions) == 1 else None
        if keys is not None:
            candidates = [item for key in keys if (item := _item_at(self, key)) is not None]
        elif len(conditions) == 1:
            # Only the items with the index key asked for, compared as plain strings and numbers
            # (moto compares every item of the table through DynamoType's methods).
            name, wanted = conditions[0]
            candidates = [item for item in _items(self) if (value := item.attrs.get(name)) is not None
                          and value.value == wanted.value and value.type == wanted.type]
        else:
            candidates = list(_items(self))
    elif hash_key is not None and self.range_key_attr:
        part = self.items.get(hash_key)
        candidates = list(part.values()) if part else []
        if not _string_keys(candidates):
            return _table_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                                scan_index_forward, projection_expressions, index_name, *args, **kwargs)
        candidates.sort(key=lambda item: item.range_key.value)
        if exclusive_start_key:
            start = exclusive_start_key.get(self.range_key_attr, {}).get("S")
            if start is None:
                return _table_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                                    scan_index_forward, projection_expressions, index_name, *args, **kwargs)
            keys = [item.range_key.value for item in candidates]
            if scan_index_forward is False:
                candidates = candidates[: bisect.bisect_left(keys, start)]
            else:
                candidates = candidates[bisect.bisect_right(keys, start):]
            exclusive_start_key = None
    else:
        return _table_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                            scan_index_forward, projection_expressions, index_name, *args, **kwargs)
    # Requests run one at a time (call_action below), so the instance's all_items can stand in
    # for the duration of this one query.
    self.all_items = lambda: candidates
    try:
        return _table_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                            scan_index_forward, projection_expressions, index_name, *args, **kwargs)
    finally:
        del self.all_items

# BatchExecuteStatement: an UPDATE of the form the service sends (see the module's notes) is
# applied through update_item; anything else goes to moto's own PartiQL.

_BATCH_STATEMENTS_MAX = 25
_PARTIQL_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|(\?)|(<>|<=|>=|=|<|>)|([()])|([A-Za-z]+))')
_PARTIQL_OPERATORS = frozenset(("=", "<>", "<", "<=", ">", ">="))


class _NotTheFastForm(Exception):
    pass


def _partiql_tokens(statement):
    """The statement's tokens — ("id", name), ("?", index), ("op", op), ("(", None),
    (")", None), ("word", WORD) — or None when it has anything else."""
    tokens, at, params = [], 0, 0
    while True:
        m = _PARTIQL_TOKEN.match(statement, at)
        if m is None:
            return tokens if not statement[at:].strip() else None
        at = m.end()
        name, mark, op, paren, word = m.groups()
        if name is not None:
            if not name:
                return None
            tokens.append(("id", name.replace('""', '"')))
        elif mark:
            tokens.append(("?", params))
            params += 1
        elif op:
            tokens.append(("op", op))
        elif paren:
            tokens.append((paren, None))
        else:
            tokens.append(("word", word.upper()))


class _PartiqlUpdate:
    """Reads `UPDATE "t" (SET "a" = ? | REMOVE "a")... WHERE <cond>`; the condition as a tree of
    ("or", [...]), ("and", [...]), ("cmp", name, op, parameter), ("missing", name),
    ("present", name)."""

    def __init__(self, tokens):
        self.tokens, self.at = tokens, 0

    def peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else (None, None)

    def take(self, kind, value=None):
        token = self.peek()
        if token[0] != kind or (value is not None and token[1] != value):
            raise _NotTheFastForm
        self.at += 1
        return token[1]

    def statement(self):
        self.take("word", "UPDATE")
        table = self.take("id")
        sets, removes = [], []
        while self.peek() in (("word", "SET"), ("word", "REMOVE")):
            if self.take("word") == "SET":
                name = self.take("id")
                self.take("op", "=")
                sets.append((name, self.take("?")))
            else:
                removes.append(self.take("id"))
        if not sets and not removes:
            raise _NotTheFastForm
        self.take("word", "WHERE")
        where = self.disjunction()
        if self.at != len(self.tokens):
            raise _NotTheFastForm
        return table, tuple(sets), tuple(removes), where

    def disjunction(self):
        terms = [self.conjunction()]
        while self.peek() == ("word", "OR"):
            self.at += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction(self):
        terms = [self.term()]
        while self.peek() == ("word", "AND"):
            self.at += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def term(self):
        if self.peek()[0] == "(":
            self.at += 1
            inner = self.disjunction()
            self.take(")")
            return inner
        name = self.take("id")
        if self.peek() == ("word", "IS"):
            self.at += 1
            negated = self.peek() == ("word", "NOT")
            if negated:
                self.at += 1
            self.take("word", "MISSING")
            return ("present" if negated else "missing", name)
        op = self.take("op")
        return ("cmp", name, op, self.take("?"))


@functools.lru_cache(maxsize=4096)
def _partiql_update(statement):
    """(table, sets, removes, where, number of parameters) of an UPDATE of the fast form, or None."""
    tokens = _partiql_tokens(statement)
    if tokens is None:
        return None
    try:
        parts = _PartiqlUpdate(tokens).statement()
    except _NotTheFastForm:
        return None
    return (*parts, sum(1 for kind, _ in tokens if kind == "?"))


def _conjuncts(node):
    if node[0] == "and":
        for term in node[1]:
            yield from _conjuncts(term)
    else:
        yield node


class _UpdateCall:
    """An UPDATE of the fast form as moto's update_item arguments, on a table with these keys."""

    def __init__(self, sets, removes, where, key_attrs):
        self.refs = {}  # attribute name -> its placeholder
        self.key = {}  # key attribute -> parameter
        condition = []
        for term in _conjuncts(where):
            if term[0] == "cmp" and term[2] == "=" and term[1] in key_attrs:
                if term[1] in self.key:
                    raise _NotTheFastForm
                self.key[term[1]] = term[3]
            else:
                condition.append(term)
        if len(self.key) != len(key_attrs):
            raise _NotTheFastForm
        self.values = [p for _, p in sets]  # the parameters given as values, in order
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(f"{self.ref(n)} = :v{p}" for n, p in sets))
        if removes:
            clauses.append("REMOVE " + ", ".join(self.ref(n) for n in removes))
        self.update_expression = " ".join(clauses)
        self.condition_expression = f"attribute_exists({self.ref(key_attrs[0])})"
        if condition:
            node = condition[0] if len(condition) == 1 else ("and", condition)
            self.condition_expression += f" AND ({self.condition(node)})"
        self.names = {ref: name for name, ref in self.refs.items()}

    def ref(self, name):
        if name not in self.refs:
            self.refs[name] = f"#n{len(self.refs)}"
        return self.refs[name]

    def condition(self, node):
        kind = node[0]
        if kind in ("and", "or"):
            parts = (f"({self.condition(n)})" if n[0] in ("and", "or") else self.condition(n) for n in node[1])
            return f" {kind.upper()} ".join(parts)
        if kind == "cmp":
            self.values.append(node[3])
            return f"{self.ref(node[1])} {node[2]} :v{node[3]}"
        return f"attribute_{'not_' if kind == 'missing' else ''}exists({self.ref(node[1])})"


@functools.lru_cache(maxsize=4096)
def _update_call(statement, key_attrs):
    parsed = _partiql_update(statement)
    if parsed is None:
        return None
    try:
        return _UpdateCall(*parsed[1:4], key_attrs)
    except _NotTheFastForm:
        return None


def _statement_error(table_name, code, message, item=None):
    error = {"Code": code, "Message": message}
    if item is not None:
        error["Item"] = item
    return {"TableName": table_name, "Error": error}


def _execute_update(backend, table, call, stmt):
    """One UPDATE of the fast form: its entry of the answer's Responses."""
    params = stmt.get("Parameters") or []
    if len(params) != _partiql_update(stmt["Statement"])[4]:
        return _statement_error(table.name, "ValidationError",
                                "Number of parameters in request and statement don't match.")
    if not all(isinstance(p, dict) and len(p) == 1 for p in params):
        return _statement_error(table.name, "ValidationError",
                                "Supplied AttributeValue has more than one datatypes set, "
                                "must contain exactly one of the supported datatypes")
    declared = {a["AttributeName"]: a["AttributeType"] for a in table.attr}
    key = {}
    for attr, p in call.key.items():
        given = next(iter(params[p]))
        if given != declared.get(attr, given):
            return _statement_error(table.name, "ValidationError",
                                    "One or more parameter values were invalid: Type mismatch for key "
                                    f"{attr} expected: {declared[attr]} actual: {given}")
        key[attr] = params[p]
    try:
        backend.update_item(
            table.name,
            key,
            call.update_expression,
            dict(call.names),
            {f":v{p}": params[p] for p in call.values},
            condition_expression=call.condition_expression,
        )
    except ConditionalCheckFailed:
        old = None
        if stmt.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD":
            current = backend.get_item(table.name, key)
            old = None if current is None else current.to_json()["Attributes"]
        return _statement_error(table.name, "ConditionalCheckFailed", "The conditional request failed", old)
    except JsonRESTError as e:
        return _statement_error(table.name, "ValidationError", e.message)
    return {"TableName": table.name}


_batch_execute_statement = dynamodb_models.DynamoDBBackend.batch_execute_statement


def batch_execute_statement(self, statements):
    """moto's batch_execute_statement, with an UPDATE of the fast form applied by update_item."""
    if len(statements) > _BATCH_STATEMENTS_MAX:
        first = 268435456
        listed = ", ".join(
            f"com.amazonaws.dynamodb.v20120810.BatchStatementRequest@{first + i:x}" for i in range(len(statements))
        )
        raise MockValidationException(
            f"1 validation error detected: Value '[{listed}]' at 'statements' failed to satisfy constraint: "
            f"Member must have length less than or equal to {_BATCH_STATEMENTS_MAX}"
        )
    plans = []
    for stmt in statements:
        plan = None
        parsed = _partiql_update(stmt.get("Statement") or "")
        if parsed is not None:
            table = self.tables.get(parsed[0])
            if table is not None:
                call = _update_call(stmt["Statement"], tuple(table.table_key_attrs))
                if call is not None:
                    plan = (table, call)
        plans.append(plan)
    if not any(plans):
        return _batch_execute_statement(self, statements)
    responses = []
    for stmt, plan in zip(statements, plans):
        if plan is None:
            responses.extend(_batch_execute_statement(self, [stmt]))
        else:
            responses.append(_execute_update(self, plan[0], plan[1], stmt))
    return responses


# DynamoDB Streams: which records are kept, how long, and how an iterator is served (see the
# module's notes).

_STREAM_ONLY_CHANGED = os.environ.get("MOTO_STREAM_ONLY_CHANGED", "tally")
_STREAM_KEEP_S = 600.0
_ITERATOR_LIFE_S = 900.0  # AWS: a shard iterator expires 15 minutes after it is returned


def _stream_keeps(old, new):
    """Whether the record of a change from `old` to `new` is kept (see the module's notes)."""
    if not _STREAM_ONLY_CHANGED:
        return True
    if old is None or new is None:
        return False
    value = new.attrs.get(_STREAM_ONLY_CHANGED)
    if value is None:
        return False
    before = old.attrs.get(_STREAM_ONLY_CHANGED)
    return before is None or before != value


def stream_record_init(self, table, stream_type, event_name, old, new, seq):
    """moto's StreamRecord, with its size counted from the items' sizes (not a JSON dump) and
    the time it was made."""
    self.created = time.time()
    rec = old if old is not None else new
    keys = {table.hash_key_attr: rec.hash_key.to_json()}
    size = rec.hash_key.size() + bytesize(table.hash_key_attr)
    if table.range_key_attr is not None:
        keys[table.range_key_attr] = rec.range_key.to_json()
        size += rec.range_key.size() + bytesize(table.range_key_attr)
    dynamodb = {
        "StreamViewType": stream_type,
        "ApproximateCreationDateTime": dynamodb_table.utcnow(),
        "SequenceNumber": str(seq),
        "SizeBytes": 1,
        "Keys": keys,
    }
    if stream_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
        dynamodb["NewImage"] = new.to_json()["Attributes"]
        size += new.size()
    if stream_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
        dynamodb["OldImage"] = old.to_json()["Attributes"]
        size += old.size()
    dynamodb["SizeBytes"] = size
    self.record = {
        "eventID": dynamodb_table.mock_random.uuid4().hex,
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.0",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
    }


def _trim_stream(shard):
    """Drops the records older than _STREAM_KEEP_S from the front of the shard; the shard's first
    sequence number moves with them, so a record keeps its number and its place
    (number - first) in the list. Runs once the oldest is a second past the limit, so that it
    drops a second's records at a time, not one per write."""
    items = shard.items
    if not items or getattr(items[0], "created", None) is None:
        return
    now = time.time()
    if items[0].created > now - _STREAM_KEEP_S - 1.0:
        return
    cutoff = now - _STREAM_KEEP_S
    drop = 0
    while drop < len(items) and getattr(items[drop], "created", now) < cutoff:
        drop += 1
    del items[:drop]
    shard.starting_sequence_number += drop


_stream_shard_add = dynamodb_table.StreamShard.add


def stream_shard_add(self, old, new):
    """moto's StreamShard.add for the records kept (see the module's notes)."""
    _note_write(self, old, new)
    if not _stream_keeps(old, new):
        return
    _trim_stream(self)
    if self.table.lambda_event_source_mappings:
        return _stream_shard_add(self, old, new)
    if old is None:
        event_name = "INSERT"
    elif new is None:
        event_name = "REMOVE"
    else:
        event_name = "MODIFY"
    seq = len(self.items) + self.starting_sequence_number
    self.items.append(dynamodb_table.StreamRecord(self.table, self.table.stream_specification["StreamViewType"],
                                                  event_name, old, new, seq))


class _TrimmedDataAccess(JsonRESTError):
    def __init__(self):
        super().__init__("TrimmedDataAccessException",
                         "The operation attempted to read past the oldest stream record in a shard.")


class _ExpiredIterator(JsonRESTError):
    def __init__(self):
        super().__init__("ExpiredIteratorException", "The shard iterator has expired or is not valid.")


_shard_iterator_init = dynamodbstreams_models.ShardIterator.__init__
_shard_iterator_get = dynamodbstreams_models.ShardIterator.get


def shard_iterator_init(self, *args, **kwargs):
    _shard_iterator_init(self, *args, **kwargs)
    self.created = time.time()


def shard_iterator_get(self, limit=1000):
    """moto's ShardIterator.get on the shard as trimmed: a TRIM_HORIZON iterator reads from the
    oldest record kept, another one whose place was trimmed fails as on AWS."""
    shard = self.stream_shard
    _trim_stream(shard)
    if self.shard_iterator_type == "TRIM_HORIZON":
        self.sequence_number = max(self.sequence_number, shard.starting_sequence_number)
    elif self.sequence_number < shard.starting_sequence_number:
        raise _TrimmedDataAccess()
    return _shard_iterator_get(self, limit)


def _drop_expired_iterators(backend):
    iterators = backend.shard_iterators
    cutoff = time.time() - _ITERATOR_LIFE_S
    while iterators:
        arn = next(iter(iterators))
        if getattr(iterators[arn], "created", cutoff) >= cutoff:
            break
        del iterators[arn]


_get_shard_iterator = dynamodbstreams_models.DynamoDBStreamsBackend.get_shard_iterator


def get_shard_iterator(self, *args, **kwargs):
    _drop_expired_iterators(self)
    return _get_shard_iterator(self, *args, **kwargs)


def get_records(self, iterator_arn, limit):
    _drop_expired_iterators(self)
    iterator = self.shard_iterators.get(iterator_arn)
    if iterator is None:
        raise _ExpiredIterator()
    return iterator.get(limit)


_streams_call_action = DynamoDBStreamsHandler.call_action


def streams_call_action(self):
    with _lock:
        return _streams_call_action(self)


_serialized = DynamoHandler.serialized
_WRITTEN_DIRECTLY = frozenset(("Query", "Scan", "GetItem", "BatchGetItem", "BatchExecuteStatement"))


def serialized(self, action_result):
    result = action_result.result
    if isinstance(result, dict) and self._get_action() in _WRITTEN_DIRECTLY:
        try:
            body = json.dumps({k: v for k, v in result.items() if v is not None})
        except (TypeError, ValueError):
            return _serialized(self, action_result)
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        headers.update(self.response_headers)
        return 200, headers, body
    return _serialized(self, action_result)


def _wire_time(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    raise TypeError(type(value).__name__)


_streams_serialized = DynamoDBStreamsHandler.serialized


def streams_serialized(self, action_result):
    result = action_result.result
    if isinstance(result, dict) and self._get_action() == "GetRecords":
        try:
            body = json.dumps({k: v for k, v in result.items() if v is not None}, default=_wire_time)
        except (TypeError, ValueError):
            return _streams_serialized(self, action_result)
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        headers.update(self.response_headers)
        return 200, headers, body
    return _streams_serialized(self, action_result)


_call_action = DynamoHandler.call_action


_SLOW_S = float(os.environ.get("MOTO_SLOW_MS", "0")) / 1000.0


def call_action(self):
    if not _SLOW_S:
        with _lock:
            return _call_action(self)
    asked = time.monotonic()
    with _lock:
        started = time.monotonic()
        try:
            return _call_action(self)
        finally:
            took = time.monotonic() - started
            waited = started - asked
            if took > _SLOW_S or waited > _SLOW_S:
                body = self.body if isinstance(self.body, str) else ""
                sys.stderr.write(f"{time.strftime('%H:%M:%S')} slow {self._get_action()} waited {waited * 1000:.0f} ms, took {took * 1000:.0f} ms {body[:200]}\n")


@functools.lru_cache(maxsize=None)
def _moto_modules():
    return tuple(_list_of_moto_modules())


_list_of_moto_modules = moto_backends.list_of_moto_modules


dynamodb_models.copy = _NoTableBackups()
dynamodb_comparisons.get_filter_expression = get_filter_expression
dynamodb_models.get_filter_expression = get_filter_expression
dynamodb_table.get_filter_expression = get_filter_expression
dynamodb_models.create_condition_expression_parser = _ParsedCondition
UpdateExpressionParser.make = classmethod(lambda cls, expr: _parsed_update_expression(expr))
DepthFirstTraverser.nodes_to_be_processed = _nodes_to_be_processed
DepthFirstTraverser.process = _process
UpdateExpressionValidator.__init__ = _init_validator
UpdateExpressionValidator.validate = _validate
moto_backends.list_of_moto_modules = _moto_modules
WSGIRequestHandler.protocol_version = "HTTP/1.1"
logging.getLogger("werkzeug").setLevel(logging.WARNING)
dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items
dynamodb_models.UpdateExpressionValidator = _UpdateValidator
dynamodb_models.UpdateExpressionExecutor = _update_executor
DynamoHandler.call_action = call_action
DynamoHandler.serialized = serialized
dynamodb_table.Table.query = table_query
dynamodb_models.DynamoDBBackend.batch_execute_statement = batch_execute_statement
dynamodb_table.StreamRecord.__init__ = stream_record_init
dynamodb_table.StreamShard.add = stream_shard_add
dynamodbstreams_models.ShardIterator.__init__ = shard_iterator_init
dynamodbstreams_models.ShardIterator.get = shard_iterator_get
dynamodbstreams_models.DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator
dynamodbstreams_models.DynamoDBStreamsBackend.get_records = get_records
DynamoDBStreamsHandler.call_action = streams_call_action
DynamoDBStreamsHandler.serialized = streams_serialized

def _unix_time(dt=None):
    return time.time() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _moto_unix_time(dt) * 1000.0


_moto_unix_time = sqs_models.unix_time


def _visible_messages(queue):
    now = _unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


def _delayed_count(queue):
    now = _unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


def _not_visible_count(queue):
    now = _unix_time_millis()
    return sum(1 for m in queue._messages if not now > m.visible_at)


def _delete_receipts(queue, handles):
    """Deletes the messages that ever had one of `handles` in one walk of the queue; returns
    the handles that matched no message (already deleted ones count as matched)."""
    with queue._messages_lock:
        wanted = {h for h in handles if h not in queue.deleted_messages}
        found = set()
        kept = []
        for message in queue._messages:
            mine = wanted.intersection(message.all_receipt_handles)
            if mine:
                found |= mine
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                continue
            kept.append(message)
        if found:
            queue._messages = kept
        return wanted - found


def _queue_delete_message(self, receipt_handle):
    if _delete_receipts(self, [receipt_handle]):
        raise sqs_models.ReceiptHandleIsInvalid()


def _delete_message_batch(self, queue_name, receipts):
    queue = self.get_queue(queue_name)
    invalid = _delete_receipts(queue, [r["ReceiptHandle"] for r in receipts])
    success, errors = [], []
    for r in receipts:
        if r["ReceiptHandle"] in invalid:
            errors.append(
                {
                    "Id": r["Id"],
                    "SenderFault": True,
                    "Code": "ReceiptHandleIsInvalid",
                    "Message": f'The input receipt handle "{r["ReceiptHandle"]}" is not a valid receipt handle.',
                }
            )
        else:
            success.append(r["Id"])
    return success, errors


def _within_retention(self, queue_name, message):
    retention = int(self.get_queue(queue_name).message_retention_period)
    return retention + message.sent_timestamp / 1000 > time.time()


_ATOMS = (str, int, float, bool, type(None))


def _node_deepcopy(self, memo):
    new = self.__class__.__new__(self.__class__)
    memo[id(self)] = new
    state = new.__dict__
    for key, value in self.__dict__.items():
        if isinstance(value, _ATOMS):
            state[key] = value
        elif isinstance(value, list):
            state[key] = [v if isinstance(v, _ATOMS) else copy.deepcopy(v, memo) for v in value]
        else:
            state[key] = copy.deepcopy(value, memo)
    return new


Node.__deepcopy__ = _node_deepcopy
sqs_models.unix_time = _unix_time
sqs_models.unix_time_millis = _unix_time_millis
sqs_models.Queue.messages = property(_visible_messages)
sqs_models.Queue.delete_message = _queue_delete_message
sqs_models.Queue.approximate_number_of_messages_delayed = property(_delayed_count)
sqs_models.Queue.approximate_number_of_messages_not_visible = property(_not_visible_count)
sqs_models.SQSBackend.delete_message_batch = _delete_message_batch
sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _within_retention


def _freeze_survivors():
    while True:
        time.sleep(_FREEZE_EVERY_S)
        gc.freeze()


_FREEZE_EVERY_S = 2.0


def _stall_watch():
    while True:
        t = time.monotonic()
        time.sleep(0.01)
        d = time.monotonic() - t
        if d > 0.08:
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} stall {d * 1000:.0f} ms\n")


if _SLOW_S:
    threading.Thread(target=_stall_watch, daemon=True).start()
threading.Thread(target=_freeze_survivors, daemon=True).start()

if __name__ == "__main__":
    main(sys.argv[1:])
