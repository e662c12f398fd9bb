#!/usr/bin/env python3
"""Check the Kubernetes recipe (the generate and seal Job files, given as arguments) against the shape agentgen's scale-out needs (run by the tests).

Every document must be a batch/v1 Job; the generate Job must be Indexed with completions equal
to the N of its `--shard auto/N`, restartPolicy Never or OnFailure, and the seal Job must seal
the same --out with --shards N. Exits 1 naming the first problem.
"""
import sys

import yaml


def fail(msg):
    print(f"{' '.join(sys.argv[1:])}: {msg}", file=sys.stderr)
    sys.exit(1)


def container_args(job):
    try:
        containers = job["spec"]["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        fail(f"job {job.get('metadata', {}).get('name')}: no spec.template.spec.containers")
    if not isinstance(containers, list) or len(containers) != 1:
        fail("each Job runs exactly one container")
    args = containers[0].get("args")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        fail("container args must be a list of strings (quote numbers)")
    return args


def flag(args, name):
    if name not in args or args.index(name) + 1 >= len(args):
        fail(f"args lack {name} VALUE: {args}")
    return args[args.index(name) + 1]


def main():
    docs = []
    for path in sys.argv[1:]:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d is not None)
    if not docs:
        fail("no documents")
    gen = seal = None
    for d in docs:
        if d.get("apiVersion") != "batch/v1" or d.get("kind") != "Job":
            fail(f"expected batch/v1 Job, got {d.get('apiVersion')} {d.get('kind')}")
        policy = d["spec"]["template"]["spec"].get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            fail(f"restartPolicy must be Never or OnFailure, got {policy!r}")
        args = container_args(d)
        if args[0] == "generate":
            gen = (d, args)
        elif args[0] == "seal":
            seal = (d, args)
        else:
            fail(f"unexpected command {args[0]!r}")
    if gen is None or seal is None:
        fail("needs a generate Job and a seal Job")
    job, args = gen
    spec = job["spec"]
    if spec.get("completionMode") != "Indexed":
        fail("the generate Job must be completionMode: Indexed")
    shard = flag(args, "--shard")
    if not shard.startswith("auto/"):
        fail(f"--shard must be auto/N, got {shard}")
    n = int(shard.split("/", 1)[1])
    if spec.get("completions") != n:
        fail(f"completions {spec.get('completions')} != N of --shard auto/{n}")
    out = flag(args, "--out")
    _, sargs = seal
    if sargs[1] != out:
        fail(f"seal URL {sargs[1]} != generate --out {out}")
    if flag(sargs, "--shards") != str(n):
        fail(f"seal --shards {flag(sargs, '--shards')} != {n}")
    print(f"ok: Indexed Job of {n} shards to {out}, then seal")


if __name__ == "__main__":
    main()
