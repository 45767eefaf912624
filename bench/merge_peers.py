"""The merge as the system s3mm replaces did it, and two faster takes on it,
run against any S3 endpoint, for the benchmark to compare with s3mm.

  sequential   list the prefix, GET each file one by one, append the data
               row, header once (the replaced Lambda's algorithm)
  pool         the same with a ThreadPoolExecutor of 50 (its redesign)
  s5cmd        `s5cmd cp` of the prefix to a local directory, then a
               header-deduplicating concatenation

Each writes one merged CSV to s3://DEST_BUCKET/KEY and prints one JSON line:
{"peer": ..., "files": N, "rows": R, "seconds": S}.
Credentials and the endpoint come from the environment and --endpoint-url.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config


def client(endpoint):
    config = Config(max_pool_connections=64, retries={"max_attempts": 10, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def list_keys(s3, bucket, prefix, limit):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".csv"):
                keys.append(obj["Key"])
                if limit and len(keys) >= limit:
                    return keys
    return keys


def merge_bodies(bodies):
    header, out, rows = None, [], 0
    for body in bodies:
        lines = body.decode("utf-8").splitlines(keepends=True)
        if not lines:
            continue
        if header is None:
            header = lines[0]
            out.append(header)
        for line in lines[1:]:
            out.append(line)
            rows += 1
    return "".join(out).encode("utf-8"), rows


def sequential(s3, bucket, keys):
    return merge_bodies(s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)


def pool(s3, bucket, keys):
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as executor:
        bodies = list(executor.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))
    return merge_bodies(bodies)


def s5cmd(endpoint, bucket, prefix):
    exe = os.path.join(os.path.dirname(sys.executable), "s5cmd")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([exe, "--endpoint-url", endpoint, "cp", f"s3://{bucket}/{prefix}*", tmp + "/"],
                       check=True, stdout=subprocess.DEVNULL)
        paths = sorted(os.path.join(root, name) for root, _, names in os.walk(tmp) for name in names if name.endswith(".csv"))
        bodies = (open(path, "rb").read() for path in paths)
        return merge_bodies(bodies), len(paths)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["sequential", "pool", "s5cmd"])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--dest-bucket", required=True)
    parser.add_argument("--dest-key", required=True)
    parser.add_argument("--limit", type=int, default=0, help="merge only the first N files (for slow peers)")
    args = parser.parse_args()
    s3 = client(args.endpoint_url)
    started = time.monotonic()
    if args.peer == "s5cmd":
        (body, rows), files = s5cmd(args.endpoint_url, args.bucket, args.prefix)
    else:
        keys = list_keys(s3, args.bucket, args.prefix, args.limit)
        files = len(keys)
        body, rows = (sequential if args.peer == "sequential" else pool)(s3, args.bucket, keys)
    s3.put_object(Bucket=args.dest_bucket, Key=args.dest_key, Body=body)
    seconds = time.monotonic() - started
    print(json.dumps({"peer": args.peer, "files": files, "rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
