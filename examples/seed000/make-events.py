#!/usr/bin/env python3
"""Writes events.ndjson and late.ndjson: seed 000's water levels for 5 locations
(i=40..44), one reading every 10 minutes on 2022-06-13 (UTC), and three readings of
location 42 for 14:00-15:00 that arrive late (after the day is over). Deterministic."""
import json, math, os

here = os.path.dirname(os.path.abspath(__file__))
day = 1655078400  # 2022-06-13T00:00:00Z


def level(i, t):
    return round(3.0 + 0.1 * (i - 40) + 0.5 * math.sin((t - day) / 3600 / 24 * 2 * math.pi), 3)


def line(i, t, n):
    ts = f"2022-06-13T{(t - day) // 3600:02d}:{(t - day) % 3600 // 60:02d}:{(t - day) % 60:02d}Z"
    return json.dumps({"i": str(i), "time": ts, "level": level(i, t), "id": f"{i}-{n}"})


with open(os.path.join(here, "events.ndjson"), "w") as f:
    for k in range(144):
        t = day + k * 600
        for i in range(40, 45):
            f.write(line(i, t, k) + "\n")
with open(os.path.join(here, "late.ndjson"), "w") as f:
    for n, m in enumerate([5, 25, 45]):
        t = day + 14 * 3600 + m * 60
        f.write(line(42, t, f"late{n}") + "\n")
