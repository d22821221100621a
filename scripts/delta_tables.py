"""Makes the Delta tables reckon-delta's tests plan from, with the Python `deltalake`
package (delta-rs): `python delta_tables.py SCENARIO DIR`. Prints a JSON object naming
the version each step made.

- `history`: three days appended (v0-v2), late rows into the first day (v3), OPTIMIZE
  (v4: compaction only), a DELETE in the second day (v5), an overwrite of the second
  day (v6), a new fourth day (v7).
- `long`: 14 daily appends, late rows into the first day at v14, a checkpoint at v14,
  then one more day (v15).
- `big`: `RECKON_DELTA_COMMITS` (default 10,000) small appends, a new day every 100,
  one in 20 late into an earlier day; delta-rs checkpoints every 100 commits.
"""
import json
import sys

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def rows(day, n, start=0):
    return pa.table({"day": [day] * n, "id": list(range(start, start + n)), "v": [1.0] * n})


def history(p):
    steps = {}
    for d in ["2024-01-01", "2024-01-02", "2024-01-03"]:
        write_deltalake(p, rows(d, 5), partition_by=["day"], mode="append")
    steps["days"] = DeltaTable(p).version()
    write_deltalake(p, rows("2024-01-01", 2, 100), partition_by=["day"], mode="append")
    steps["late"] = DeltaTable(p).version()
    DeltaTable(p).optimize.compact()
    steps["optimize"] = DeltaTable(p).version()
    DeltaTable(p).delete("id = 1 and day = '2024-01-02'")
    steps["delete"] = DeltaTable(p).version()
    write_deltalake(p, rows("2024-01-02", 3, 200), partition_by=["day"], mode="overwrite",
                    predicate="day = '2024-01-02'")
    steps["overwrite"] = DeltaTable(p).version()
    write_deltalake(p, rows("2024-01-04", 4), partition_by=["day"], mode="append")
    steps["new_day"] = DeltaTable(p).version()
    return steps


def long(p):
    steps = {}
    for i in range(14):
        write_deltalake(p, rows(f"2024-02-{i + 1:02d}", 3), partition_by=["day"], mode="append")
    write_deltalake(p, rows("2024-02-01", 2, 100), partition_by=["day"], mode="append")
    dt = DeltaTable(p)
    dt.create_checkpoint()
    steps["checkpoint"] = dt.version()
    write_deltalake(p, rows("2024-02-15", 3), partition_by=["day"], mode="append")
    steps["after"] = DeltaTable(p).version()
    return steps


def big(p):
    import os
    import random

    n = int(os.environ.get("RECKON_DELTA_COMMITS", "10000"))
    rnd = random.Random(2)
    late = 0
    for i in range(n):
        day = i // 100
        if day > 0 and rnd.random() < 0.05:
            day = rnd.randrange(day)
            late += 1
        import datetime
        name = (datetime.date(2020, 1, 1) + datetime.timedelta(days=day)).isoformat()
        write_deltalake(p, rows(name, 2, i * 2), partition_by=["day"], mode="append")
    return {"commits": n, "late": late, "version": DeltaTable(p).version()}


if __name__ == "__main__":
    scenario, path = sys.argv[1], sys.argv[2]
    print(json.dumps({"history": history, "long": long, "big": big}[scenario](path)))
