"""Writes to reckon with the official InfluxDB v2 Python client, unchanged.

Usage: influx_client.py URL BUCKET. Prints one JSON object with what happened.
"""
import json
import sys
from datetime import datetime, timezone

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

url, bucket = sys.argv[1], sys.argv[2]
out = {}
with InfluxDBClient(url=url, token="any-token", org="my-org") as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    # Points, seconds precision: location 1, hour 0 of 2022-06-13.
    t0 = int(datetime(2022, 6, 13, tzinfo=timezone.utc).timestamp())
    points = [
        Point("water_level").tag("i", "1").tag("site", "north").field("level", 4.0 + k).time(t0 + 60 * k, WritePrecision.S)
        for k in range(3)
    ]
    write.write(bucket=bucket, record=points, write_precision=WritePrecision.S)
    # Line protocol text, nanoseconds (the default), with an integer and a string field.
    write.write(
        bucket=bucket,
        record=[
            f"water_level,i=2 level=10.5,n=3i,note=\"a b, c\" {t0 * 10**9 + 5}",
            f"water_level,i=2 level=11.5,n=4i,note=\"x\" {t0 * 10**9 + 6}",
        ],
    )
    # A dict record, milliseconds.
    write.write(
        bucket=bucket,
        record={"measurement": "water_level", "tags": {"i": "1"}, "fields": {"level": 7.0}, "time": (t0 + 3599) * 1000},
        write_precision=WritePrecision.MS,
    )
    # Then time passes (a point two hours later closes hour 0's windows) and a late point
    # for location 1 arrives: hour 0 is corrected.
    write.write(bucket=bucket, record=f"water_level,i=1 level=1 {(t0 + 7200) * 10**9}")
    write.write(bucket=bucket, record=f"water_level,i=1 level=2 {(t0 + 30) * 10**9}")
    # A bad line next to a good one: the client raises with reckon's message.
    try:
        write.write(bucket=bucket, record=["water_level,i=3 level=1 1655078400000000000", "water_level,i=3 level="])
        out["bad"] = None
    except InfluxDBError as e:
        out["bad"] = {"status": e.response.status, "message": e.message}
    # An unknown bucket.
    try:
        write.write(bucket="nope", record="m,i=1 level=1")
        out["unknown"] = None
    except InfluxDBError as e:
        out["unknown"] = {"status": e.response.status, "message": e.message}
    out["health"] = client.health().status
print(json.dumps(out))
