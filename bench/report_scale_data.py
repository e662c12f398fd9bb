#!/usr/bin/env python3
"""Scale data for the `agentgen report` benchmark when no release `generate` is at hand:
replicate the rows of a real (reference-policy) dataset into N shard folders of R rows each,
with unique sample and group ids, in agentgen's own layout (parts of 50,000 rows, row groups
of 1,000, zstd level 3, the schema metadata kept). Needs pyarrow.

    python3 bench/report_scale_data.py SRC_DATASET OUT_DIR --shards 4 --rows 250000
"""
import argparse, json, os, shutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ap = argparse.ArgumentParser()
ap.add_argument("src"); ap.add_argument("out")
ap.add_argument("--shards", type=int, default=4); ap.add_argument("--rows", type=int, default=250_000)
a = ap.parse_args()

data = os.path.join(a.src, "data")
tables = {}
for split in ("train", "rejected"):
    files = sorted(f for f in os.listdir(data) if f.startswith(split + "-") and f.endswith(".parquet"))
    if files:
        tables[split] = pa.concat_tables(pq.read_table(os.path.join(data, f)) for f in files)
src_rows = sum(t.num_rows for t in tables.values())
meta = pq.read_schema(os.path.join(data, sorted(os.listdir(data))[0])).metadata

PART = 50_000
for s in range(a.shards):
    d = os.path.join(a.out, f"s{s}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "data"))
    counts = {}
    for split, t in tables.items():
        n = round(a.rows * t.num_rows / src_rows)
        copies = -(-n // t.num_rows)
        part, buf, written = 0, [], 0
        def flush():
            global part
            if not buf:
                return
            tb = pa.concat_tables(buf).replace_schema_metadata(meta)
            pq.write_table(tb, os.path.join(d, "data", f"{split}-{s:05}-{part:05}.parquet"),
                           row_group_size=1000, compression="zstd", compression_level=3)
            part += 1
            buf.clear()
        for k in range(copies):
            take = min(t.num_rows, n - written)
            if take <= 0:
                break
            c = t.slice(0, take)
            suffix = f"-r{s}.{k}"
            for col in ("sample_id", "group_id"):
                i = c.schema.get_field_index(col)
                c = c.set_column(i, col, pc.binary_join_element_wise(c[col], pa.scalar(suffix), ""))
            buf.append(c)
            written += take
            if sum(b.num_rows for b in buf) >= PART:
                flush()
        flush()
        counts[split] = written
    m = json.load(open(os.path.join(a.src, "manifest.json")))
    m["shard_index"], m["shard_count"] = s, a.shards
    m["counts"]["accepted"], m["counts"]["rejected"] = counts.get("train", 0), counts.get("rejected", 0)
    m["files"] = []
    m["command_line"] = f"bench/report_scale_data.py (replicated from {m.get('command_line', '')})"
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=2)
    print(f"{d}: {counts}")
