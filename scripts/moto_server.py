"""Runs moto_server (the AWS emulator of the local stack) with two fixes to its DynamoDB,
applied in this process only; what each request answers is unchanged.

- moto handles concurrent DynamoDB requests without a lock, so a transaction that backs up
  a table while another request writes it fails now and then with a 500. Here DynamoDB
  requests run one at a time (moto runs Python code under one interpreter lock anyway).
- Before a TransactWriteItems, moto deep-copies the whole table once for every item of the
  request, to roll back if a condition fails: a 100-item transaction on a table of a few
  thousand items takes seconds. Here the conditions are checked first, without writing;
  when one fails the transaction is cancelled as moto would cancel it, and when all hold it
  is applied without the copies (requests run one at a time, so nothing changes between the
  check and the writes).
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.RLock()
_local = threading.local()


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


_call_action = DynamoHandler.call_action


def call_action(self):
    with _lock:
        return _call_action(self)


dynamodb_models.copy = _NoTableBackups()
dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items
DynamoHandler.call_action = call_action

if __name__ == "__main__":
    main(sys.argv[1:])
