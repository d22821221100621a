"""Makes the Delta tables reckon-delta's tests plan from, with the Python `deltalake`
package (delta-rs): `python delta_tables.py SCENARIO DIR`. Prints a JSON object naming
the version each step made.

- `history`: three days appended (v0-v2), late rows into the first day (v3), OPTIMIZE
  (v4: compaction only), a DELETE in the second day (v5), an overwrite of the second
  day (v6), a new fourth day (v7).
- `long`: 14 daily appends, late rows into the first day at v14, a checkpoint at v14,
  then one more day (v15).
- `events`: a `ts` event-time column beside the `day` partition: two commits of
  2024-03-01 (v0-v1), 2024-03-02 at 00:20 (v2, checkpointed), a row of 2024-03-01 at 23:55 that is
  25 minutes behind the watermark (v3), 2024-03-02 at noon (v4), then a row of
  2024-03-02 at 02:00, ten hours behind, into the current day (v5).
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


def events(p):
    import datetime

    def at(day, times):
        ts = [datetime.datetime.fromisoformat(f"{day}T{t}:00+00:00") for t in times]
        return pa.table({
            "day": [day] * len(ts),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "v": [1.0] * len(ts),
        })

    steps = {}
    for day, times in [("2024-03-01", ["00:00", "06:00", "12:00"]),
                       ("2024-03-01", ["12:30", "23:50"]),
                       ("2024-03-02", ["00:20"])]:
        write_deltalake(p, at(day, times), partition_by=["day"], mode="append")
    DeltaTable(p).create_checkpoint()
    steps["start"] = DeltaTable(p).version()
    write_deltalake(p, at("2024-03-01", ["23:55"]), partition_by=["day"], mode="append")
    steps["within_grace"] = DeltaTable(p).version()
    write_deltalake(p, at("2024-03-02", ["12:00"]), partition_by=["day"], mode="append")
    write_deltalake(p, at("2024-03-02", ["02:00"]), partition_by=["day"], mode="append")
    steps["late_today"] = DeltaTable(p).version()
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
    print(json.dumps({"history": history, "long": long, "events": events, "big": big}[scenario](path)))
