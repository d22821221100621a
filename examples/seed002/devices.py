"""Seed 002's device table, as its data generator writes it: a Delta table partitioned
by `event_time` (a day), written with the Python `deltalake` package.

    python devices.py TABLE DAY [ROWS]      # append ROWS (default 10) devices of DAY
    python devices.py TABLE --optimize DAY  # compact DAY's files (no data changes)
"""
import sys

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

table = sys.argv[1]
if sys.argv[2] == "--optimize":
    day = sys.argv[3]
    DeltaTable(table).optimize.compact(partition_filters=[("event_time", "=", day)])
else:
    day, n = sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10
    rows = pa.table({
        "event_time": [day] * n,
        "device_id": [f"dev-{i:03d}" for i in range(n)],
        "type": ["thermometer" if i % 2 else "sensor" for i in range(n)],
        "reading": [20.0 + i for i in range(n)],
    })
    write_deltalake(table, rows, partition_by=["event_time"], mode="append")
print(DeltaTable(table).version())
