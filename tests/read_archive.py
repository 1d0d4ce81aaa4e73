"""Reads a Runnel Parquet archive with pyarrow and prints what it holds, as JSON.

Usage: read_archive.py DIR TOPIC

Checks on the way that every row lies in the date=/hour= directory of its event time, and
prints the row count, the distinct event ids, and the event ids' sum modulo 2^64 (to compare
with ClickHouse's sum(event_id)).
"""
import datetime
import json
import sys

import pyarrow.dataset as ds

root, topic = sys.argv[1], sys.argv[2]
dataset = ds.dataset(f"{root}/topic={topic}", format="parquet", partitioning="hive")
table = dataset.to_table()
ids = table.column("event_id").to_pylist()
ts = table.column("ts").to_pylist()
dates = table.column("date").to_pylist()
hours = table.column("hour").to_pylist()
misplaced = 0
for t, d, h in zip(ts, dates, hours):
    when = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    if when.strftime("%Y-%m-%d") != str(d) or when.hour != int(h):
        misplaced += 1
print(json.dumps({
    "files": len(dataset.files),
    "rows": len(ids),
    "distinct": len(set(ids)),
    "id_sum": sum(ids) % (1 << 64),
    "misplaced": misplaced,
}))
