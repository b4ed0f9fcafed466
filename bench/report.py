"""Turn a pytest-benchmark JSON file from bench/test_codecs.py into a markdown table of medians and ratios.

Ratios are taken within the one run that produced the file: each library's median over its ceiling's
(msgspec.msgpack for csente.msgpack, msgspec.json for the others), and the pure-Python libraries' medians
over ours (the speed-up a user gets).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

BASELINE = "msgspec.json"
CEILINGS = {"csente.msgpack": "msgspec.msgpack", "msgspec.msgpack": "msgspec.msgpack"}
PEERS = {"csente.edn": "edn_format", "csente.transit": "transit-python2"}


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        op = bench["name"].removeprefix("test_").split("[")[0]
        params = bench["params"]
        medians[f"{op} {params['shape']}"][params["library"]] = bench["stats"]["median"]
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"python {data['machine_info']['python_version']}, {data['datetime']}")
    print()
    print("| operation | library | median | × ceiling (msgspec) | speed-up vs pure-Python peer |")
    print("|---|---|---:|---:|---:|")
    for group in sorted(medians):
        row = medians[group]
        for library, median in sorted(row.items(), key=lambda kv: kv[1]):
            ceiling = CEILINGS.get(library, BASELINE)
            ratio = f"{median / row[ceiling]:.2f} ({ceiling.removeprefix('msgspec.')})" if ceiling in row else "-"
            peer = PEERS.get(library)
            speedup = f"{row[peer] / median:.0f}× ({peer})" if peer in row else ""
            print(f"| {group} | {library} | {median * 1e6:.2f} µs | {ratio} | {speedup} |")


if __name__ == "__main__":
    main(sys.argv[1])
