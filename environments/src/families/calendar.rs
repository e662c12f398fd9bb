//! `calendar`: meeting scheduling across people in different time zones. The agent reads each
//! attendee's time zone, working hours and busy intervals (and rooms at the top difficulty) and
//! books the earliest slot that works for everyone. The verifier compares the created events
//! with the unique earliest valid booking.

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::common::{Base, TaskParts, builtin_family, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{arg_i64, arg_str, call, hhmm, mix, name_hash, norm_text, rng};

const NAME: &str = "calendar";
const VERSION: u32 = 1;

/// The meeting-scheduling family.
pub struct Calendar;

builtin_family!(Calendar, NAME, VERSION, Org::build);

const FIRST: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Freya", "Gita", "Hugo", "Isla", "Jamal", "Kenji",
    "Lucia", "Marek", "Nadia", "Oscar", "Paula",
];
const TEAMS: &[&str] = &["platform", "design", "sales", "research", "finance", "support"];

struct Person {
    id: String,
    name: String,
    team: &'static str,
    offset: i64,
    start: i64,
    end: i64,
}

struct Room {
    id: String,
    capacity: usize,
}

struct Org {
    base: Base,
    people: Vec<Person>,
    rooms: Vec<Room>,
}

impl Org {
    fn build(seed: u64) -> Result<Org> {
        let mut r = rng(&[0xCA1E, seed]);
        let mut allowed =
            vec!["get_person", "get_busy", "create_event", "list_rooms", "cancel_event"];
        if r.random_bool(0.8) {
            allowed.push("list_people");
        }
        allowed.shuffle(&mut r);
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let offsets = [-5i64, -4, -3, 0, 1, 2, 3];
        let mut names: Vec<&str> = FIRST.to_vec();
        names.shuffle(&mut r);
        let n = r.random_range(8..=12);
        let people = (0..n)
            .map(|i| {
                let start = [8, 9, 9, 10][r.random_range(0..4)] * 60;
                Person {
                    id: format!("p{:02}", i + 1 + r.random_range(0..3) * 20),
                    name: names[i % names.len()].to_owned(),
                    team: TEAMS.choose(&mut r).copied().unwrap_or("platform"),
                    offset: *offsets.choose(&mut r).unwrap_or(&0),
                    start,
                    end: start + 8 * 60,
                }
            })
            .collect();
        let rooms = (0..r.random_range(2..=4))
            .map(|i| Room {
                id: format!("room-{}", ["atlas", "borealis", "cosmos", "delta"][i]),
                capacity: [4, 6, 8, 12][r.random_range(0..4)],
            })
            .collect();
        Ok(Org { base, people, rooms })
    }

    /// Busy intervals (UTC minutes) of a key (person or room) on a date; deterministic.
    fn busy(&self, key: &str, date: &str, work: (i64, i64)) -> Vec<(i64, i64)> {
        let mut r = rng(&[self.base.instance_seed, name_hash(key), name_hash(date)]);
        let mut out: Vec<(i64, i64)> = Vec::new();
        for _ in 0..r.random_range(1..=4) {
            let slots = ((work.1 - work.0) / 30).max(1);
            let s = work.0 + r.random_range(0..slots) * 30;
            let e = s + [30, 60, 60, 90][r.random_range(0..4)];
            if !out.iter().any(|&(a, b)| s < b && a < e) {
                out.push((s, e));
            }
        }
        out.sort_unstable();
        out
    }

    fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id.trim())
    }

    fn work_utc(p: &Person) -> (i64, i64) {
        (p.start - p.offset * 60, p.end - p.offset * 60)
    }

    fn person_busy(&self, p: &Person, date: &str) -> Vec<(i64, i64)> {
        self.busy(&p.id, date, Self::work_utc(p))
    }

    fn room_busy(&self, room: &Room, date: &str) -> Vec<(i64, i64)> {
        self.busy(&room.id, date, (6 * 60, 20 * 60))
    }

    fn events_busy(state: &State, key: &str, date: &str) -> Vec<(i64, i64)> {
        state.0["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| {
                        e["date"] == date
                            && (e["room"] == key
                                || e["attendees"]
                                    .as_array()
                                    .is_some_and(|x| x.iter().any(|y| y == key)))
                    })
                    .filter_map(|e| {
                        let s = e["start"].as_i64()?;
                        Some((s, s + e["duration_min"].as_i64()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Why `[s, s+d)` does not work, or `None` when it does.
    fn conflict(
        &self,
        state: &State,
        date: &str,
        s: i64,
        d: i64,
        attendees: &[&Person],
        room: Option<&Room>,
    ) -> Option<String> {
        for p in attendees {
            let (ws, we) = Self::work_utc(p);
            if s < ws || s + d > we {
                return Some(format!("{} ({}) works {}-{} UTC", p.name, p.id, hhmm(ws), hhmm(we)));
            }
            let mut busy = self.person_busy(p, date);
            busy.extend(Self::events_busy(state, &p.id, date));
            if let Some(&(a, b)) = busy.iter().find(|&&(a, b)| s < b && a < s + d) {
                return Some(format!("{} is busy {}-{} UTC", p.id, hhmm(a), hhmm(b)));
            }
        }
        if let Some(room) = room {
            if room.capacity < attendees.len() {
                return Some(format!("{} holds only {}", room.id, room.capacity));
            }
            let mut busy = self.room_busy(room, date);
            busy.extend(Self::events_busy(state, &room.id, date));
            if busy.iter().any(|&(a, b)| s < b && a < s + d) {
                return Some(format!("{} is booked then", room.id));
            }
        }
        None
    }
}

fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

impl Instance for Org {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut last = None;
        // Attempts past the 16th only run where the first 16 found no schedulable meeting (a
        // few task seeds in a thousand instances), so every other task stays as it was.
        for attempt in 0..64 {
            match self.generate(task_seed, attempt) {
                Ok(spec) => return seal(self, &self.base, spec),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.base.gen_error("no schedulable meeting")))
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let date = arg_str(&args, "date").unwrap_or_default().trim().to_owned();
        let valid_date = date.len() == 10 && date.starts_with("2025-");
        match name {
            "list_people" => ToolResult::read(
                &json!({"people": self.people.iter().map(|p| json!({"id": p.id, "name": p.name, "team": p.team})).collect::<Vec<_>>()}),
            ),
            "get_person" => match self.person(arg_str(&args, "person_id").unwrap_or_default()) {
                None => ToolResult::error("unknown person id"),
                Some(p) => ToolResult::read(
                    &json!({"id": p.id, "name": p.name, "utc_offset_hours": p.offset, "working_hours_local": format!("{}-{}", hhmm(p.start), hhmm(p.end))}),
                ),
            },
            "get_busy" | "list_rooms" if !valid_date => {
                ToolResult::error(format!("invalid date {date:?} (YYYY-MM-DD in 2025)"))
            }
            "get_busy" => match self.person(arg_str(&args, "person_id").unwrap_or_default()) {
                None => ToolResult::error("unknown person id"),
                Some(p) => {
                    let mut b = self.person_busy(p, &date);
                    b.extend(Self::events_busy(state, &p.id, &date));
                    b.sort_unstable();
                    ToolResult::read(
                        &json!({"id": p.id, "date": date, "busy_utc": b.iter().map(|&(a, e)| format!("{}-{}", hhmm(a), hhmm(e))).collect::<Vec<_>>()}),
                    )
                }
            },
            "list_rooms" => {
                ToolResult::read(&json!({"date": date, "rooms": self.rooms.iter().map(|r| {
                let mut b = self.room_busy(r, &date);
                b.extend(Self::events_busy(state, &r.id, &date));
                b.sort_unstable();
                json!({"id": r.id, "capacity": r.capacity, "booked_utc": b.iter().map(|&(a, e)| format!("{}-{}", hhmm(a), hhmm(e))).collect::<Vec<_>>()})
            }).collect::<Vec<_>>()}))
            }
            "create_event" => {
                if !valid_date {
                    return ToolResult::error(format!("invalid date {date:?}"));
                }
                let Some(s) = arg_str(&args, "start_utc").and_then(parse_hhmm) else {
                    return ToolResult::error("start_utc must be HH:MM");
                };
                let d = arg_i64(&args, "duration_min").unwrap_or(0);
                let ids: Vec<String> = args
                    .get("attendee_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter().filter_map(|x| x.as_str().map(|s| s.trim().to_owned())).collect()
                    })
                    .unwrap_or_default();
                let mut people = Vec::new();
                for id in &ids {
                    match self.person(id) {
                        Some(p) if !people.iter().any(|q: &&Person| q.id == p.id) => people.push(p),
                        Some(_) => return ToolResult::error(format!("attendee {id} listed twice")),
                        None => return ToolResult::error(format!("unknown attendee {id:?}")),
                    }
                }
                if people.len() < 2 {
                    return ToolResult::error("a meeting needs at least two attendees");
                }
                let room = match arg_str(&args, "room_id").map(str::trim) {
                    None => None,
                    Some(rid) => match self.rooms.iter().find(|r| r.id == rid) {
                        Some(r) => Some(r),
                        None => return ToolResult::error(format!("unknown room {rid:?}")),
                    },
                };
                if let Some(why) = self.conflict(state, &date, s, d, &people, room) {
                    return ToolResult::error(format!("cannot book: {why}"));
                }
                let n = state.0["events"].as_array().map_or(0, Vec::len) + 1;
                let mut att: Vec<String> = people.iter().map(|p| p.id.clone()).collect();
                att.sort();
                let ev = json!({"id": format!("ev-{n}"), "title": norm_text(arg_str(&args, "title").unwrap_or_default()), "date": date, "start": s, "duration_min": d, "attendees": att, "room": room.map(|r| r.id.clone())});
                if let Some(a) = state.0["events"].as_array_mut() {
                    a.push(ev);
                }
                ToolResult::write(
                    &json!({"event_id": format!("ev-{n}"), "start_utc": hhmm(s), "end_utc": hhmm(s + d)}),
                )
            }
            "cancel_event" => {
                let id = arg_str(&args, "event_id").unwrap_or_default().trim().to_owned();
                let Some(a) = state.0["events"].as_array_mut() else {
                    return ToolResult::error("no events");
                };
                match a.iter().position(|e| e["id"] == id.as_str()) {
                    None => ToolResult::error(format!("unknown event {id:?}")),
                    Some(i) => {
                        a.remove(i);
                        ToolResult::write(&json!({"cancelled": id}))
                    }
                }
            }
            other => ToolResult::error(format!("tool {other:?} is not implemented")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        Verdict::from_checks(state_checks(task, state, &[]))
    }
}

impl Org {
    fn generate(&self, task_seed: u64, attempt: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0xCA1E, self.base.instance_seed, task_seed, attempt]);
        let difficulty = (task_seed % 5) as u8 + 1;
        let n_att = [2, 2, 3, 4, 4][difficulty as usize - 1]
            + usize::from(difficulty == 5 && r.random_bool(0.5));
        let mut pool: Vec<&Person> = self.people.iter().collect();
        pool.shuffle(&mut r);
        let organizer = pool[0];
        let attendees: Vec<&Person> = if difficulty == 1 {
            let same: Vec<&Person> =
                pool.iter().copied().filter(|p| p.offset == organizer.offset).collect();
            if same.len() < 2 { pool[..2].to_vec() } else { same[..2].to_vec() }
        } else {
            let mut chosen = vec![organizer];
            for p in pool.iter().skip(1) {
                if chosen.len() == n_att {
                    break;
                }
                let lo = chosen
                    .iter()
                    .map(|q| Self::work_utc(q).0)
                    .max()
                    .unwrap_or(0)
                    .max(Self::work_utc(p).0);
                let hi = chosen
                    .iter()
                    .map(|q| Self::work_utc(q).1)
                    .min()
                    .unwrap_or(0)
                    .min(Self::work_utc(p).1);
                if hi - lo >= 180 {
                    chosen.push(p);
                }
            }
            if chosen.len() < 2 {
                return Err(self.base.gen_error("no compatible attendees"));
            }
            chosen
        };
        let d = [30, 30, 45, 60, 60][difficulty as usize - 1];
        let date = format!("2025-{:02}-{:02}", r.random_range(1..=12), r.random_range(1..=28));
        let need_room = difficulty == 5 || (difficulty == 4 && r.random_bool(0.5));
        let state = State(json!({"events": []}));
        let mut found = None;
        'outer: for s in (0..48 * 30).step_by(30).map(i64::from) {
            if need_room {
                let mut rooms: Vec<&Room> =
                    self.rooms.iter().filter(|r| r.capacity >= attendees.len()).collect();
                rooms.sort_by_key(|r| (r.capacity, r.id.clone()));
                for room in rooms {
                    if self.conflict(&state, &date, s, d, &attendees, Some(room)).is_none() {
                        found = Some((s, Some(room)));
                        break 'outer;
                    }
                }
            } else if self.conflict(&state, &date, s, d, &attendees, None).is_none() {
                found = Some((s, None));
                break;
            }
        }
        let Some((start, room)) = found else { return Err(self.base.gen_error("no common slot")) };
        let topics = [
            "roadmap sync",
            "budget review",
            "design critique",
            "incident retro",
            "hiring panel",
            "quarterly planning",
        ];
        let title =
            format!("{} {}", topics.choose(&mut r).unwrap_or(&"sync"), mix(&[task_seed]) % 90 + 10);
        let names: Vec<String> =
            attendees[1..].iter().map(|p| format!("{} ({})", p.name, p.id)).collect();
        let mut reads: Vec<ToolCall> = Vec::new();
        for p in &attendees {
            reads.push(call("get_person", json!({"person_id": p.id})));
            reads.push(call("get_busy", json!({"person_id": p.id, "date": date})));
        }
        if need_room {
            reads.push(call("list_rooms", json!({"date": date})));
        }
        let ids: Vec<&str> = attendees.iter().map(|p| p.id.as_str()).collect();
        let turns = vec![
            turn(
                "Fetch every attendee's time zone, working hours and busy times in parallel.",
                reads,
            ),
            turn(
                format!(
                    "Intersect working hours (in UTC) and free time on a 30-minute grid: earliest common slot is {} UTC{}.",
                    hhmm(start),
                    room.map(|r| format!(", smallest free room {}", r.id)).unwrap_or_default()
                ),
                vec![call(
                    "create_event",
                    json!({"title": title, "date": date, "start_utc": hhmm(start), "duration_min": d, "attendee_ids": ids, "room_id": room.map(|r| r.id.clone())}),
                )],
            ),
        ];
        let room_text = if need_room {
            " Book the smallest meeting room that fits everyone and is free (if several of the same size, the first by id)."
        } else {
            " It is an online meeting (no room)."
        };
        let user = format!(
            "I'm {} ({}). Please schedule a {d}-minute meeting titled \"{title}\" on {date} with {}. Pick the earliest start time (on the hour or half hour, UTC) that is inside everyone's working hours and free for all of us.{room_text}",
            organizer.name,
            organizer.id,
            names.join(", ")
        );
        let parts = TaskParts {
            difficulty,
            system_prompt: "You are a scheduling assistant. Times in tools are UTC unless stated; working hours are local to each person's UTC offset. Create events with create_event.".to_owned(),
            user_prompt: user,
            initial_state: state.0,
            turns,
            final_answer: format!("Booked \"{title}\" on {date} at {} UTC.", hhmm(start)),
            hidden: json!({"start_utc": hhmm(start)}),
        };
        Ok(self.base.finish(task_seed, parts))
    }
}
