#!/usr/bin/env python3
"""Turn exported Rust `calendar` tasks into environments/packages/calendar_port/tasks.jsonl.

Inputs (scripts/packages/calendar_export/, produced once, see README there):
- specs.jsonl: `agentgen envs sample --family calendar --instance-seed I --task-seed T` for the
  200 distinct tasks of `agentgen envs check --family calendar --tasks 202 --seed 0` (the same
  task refs `generate --families calendar --tasks 202 --seed 0` rolls out);
- world_dump.jsonl: for each of those tasks and each of the endpoint's four modes, every call
  the scripted endpoint (calendar_world_server.py) made through the family's own tools, with
  Rust's observations: get_person on every id the generator can produce, list_people when
  offered, list_rooms and get_busy of every person on the task date.

Each task record gets the world in `params`, the Rust reference steps as the turn's reference,
the Rust final answer as the answer, the Rust hidden data (start_utc, expected_state) in
`hidden`, the instance's tool subset in `tools`, and one package probe (`later-slot`: the
reference with the meeting 30 minutes later).
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "calendar_export")
PKG = os.path.join(HERE, "..", "..", "environments", "packages", "calendar_port")


def minutes(hm):
    h, m = hm.split(":")
    return int(h) * 60 + int(m)


def world(rec):
    people, teams, rooms, busy = {}, {}, [], {}
    order = []
    for c in rec["calls"]:
        obs = json.loads(c["observation"])
        if isinstance(obs, dict) and "error" in obs:
            continue
        if c["name"] == "get_person":
            a, b = obs["working_hours_local"].split("-")
            people[obs["id"]] = {"id": obs["id"], "name": obs["name"], "team": "",
                                 "offset": obs["utc_offset_hours"], "start": minutes(a), "end": minutes(b)}
        elif c["name"] == "list_people":
            order = [p["id"] for p in obs["people"]]
            teams = {p["id"]: p["team"] for p in obs["people"]}
        elif c["name"] == "list_rooms":
            rooms = [{"id": r["id"], "capacity": r["capacity"]} for r in obs["rooms"]]
            for r in obs["rooms"]:
                busy[r["id"]] = r["booked_utc"]
        elif c["name"] == "get_busy":
            busy[obs["id"]] = obs["busy_utc"]
    for pid, t in teams.items():
        people[pid]["team"] = t
    ids = order or sorted(people)
    assert set(ids) == set(people), (ids, sorted(people))
    return [people[i] for i in ids], rooms, {rec["date"]: busy}


def main():
    dumps = {}
    for line in open(os.path.join(EXPORT, "world_dump.jsonl"), encoding="utf-8"):
        rec = json.loads(line)
        # one record per (task, mode); merge the calls of the four modes (duplicate rollouts of
        # one task repeat the same observations)
        if rec["prompt"] in dumps:
            dumps[rec["prompt"]]["calls"] += rec["calls"]
        else:
            dumps[rec["prompt"]] = rec
    out = []
    for line in open(os.path.join(EXPORT, "specs.jsonl"), encoding="utf-8"):
        spec = json.loads(line)
        rec = dumps[spec["user_prompt"]]
        people, rooms, busy = world(rec)
        tools = [t["function"]["name"] for t in spec["tools"]]
        assert sorted(tools) == sorted(rec["tools"])
        steps = [[{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                  for c in t["calls"]] for t in spec["reference"]["turns"]]
        later = json.loads(json.dumps(steps))
        for step in later:
            for c in step:
                if c["name"] == "create_event":
                    s = minutes(c["arguments"]["start_utc"]) + 30
                    c["arguments"]["start_utc"] = f"{s // 60 % 24:02d}:{s % 60:02d}"
        out.append({
            "id": spec["id"], "difficulty": spec["difficulty"], "seed": spec["task_seed"],
            "params": {"instance_seed": spec["instance_seed"], "people": people, "rooms": rooms,
                       "busy": busy, "initial_state": spec["initial_state"]},
            "tools": tools,
            "turns": [{"user": spec["user_prompt"], "reference": steps,
                       "answer": spec["reference"]["final_answer"]}],
            "hidden": spec["hidden_from_agent"],
            "probes": [{"name": "later-slot", "turns": [{"calls": later, "answer": spec["reference"]["final_answer"]}]}],
            "tags": ["ported:calendar@1", f"rust_task:{spec['id']}"],
        })
    with open(os.path.join(PKG, "tasks.jsonl"), "w", encoding="utf-8") as fh:
        for t in out:
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")
    print(len(out), "tasks")


if __name__ == "__main__":
    main()
