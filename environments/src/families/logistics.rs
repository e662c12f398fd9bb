//! Family `logistics`: book and reroute freight shipments over a seeded network of warehouses,
//! destinations, carriers and routes (pure, no process). Routes have a carrier, transit time,
//! fixed fee, per-kg rate, capacity and status; carriers have a weight limit and a hazmat
//! certification. The booking tool enforces hard rules (capacity, suspended routes, weight,
//! hazmat); the agent must also meet each shipment's deadline, obey task rules (banned carriers)
//! and minimise the total cost. The verifier checks the final bookings: every target on a valid
//! route, capacities respected, no other booking touched, and the total cost equal to the
//! optimum found by exhaustive search at generation time (which is unique by construction).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::families::common::{Base, Slots, TaskParts, difficulty_slot, turn};
use crate::framework::{
    Availability, Check, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::util::{call, money, name_hash, rng};

const NAME: &str = "logistics";
const VERSION: u32 = 2;
const INSTANCES: u64 = 1000;
const TASKS: u64 = 200;

const PLACES: &[&str] = &[
    "Arlen",
    "Brisby",
    "Caldera",
    "Dunmore",
    "Elsworth",
    "Fairhaven",
    "Glenrock",
    "Harrow",
    "Ivydale",
    "Kestrel",
    "Lowmarsh",
    "Marlow",
    "Northgate",
    "Oakridge",
    "Pemberton",
    "Redwater",
    "Stanmore",
    "Upton",
    "Valewick",
    "Westbrook",
];
const CARRIER_NAMES: &[&str] = &[
    "Swift Freight",
    "Atlas Haulage",
    "Bluewave Cargo",
    "Keystone Transport",
    "Northline Express",
    "Orbit Logistics",
    "Pioneer Carriers",
    "Redline Trucking",
    "Summit Movers",
    "Vector Shipping",
];

struct Carrier {
    id: String,
    name: &'static str,
    hazmat: bool,
    max_kg: i64,
}

struct Route {
    id: String,
    lane: usize,
    carrier: usize,
    days: i64,
    fee: i64,
    per_kg: i64,
    capacity: i64,
}

struct Shipment {
    id: String,
    lane: usize,
    kg: i64,
    hazmat: bool,
    deadline: i64,
}

struct Net {
    lanes: Vec<(&'static str, &'static str)>,
    carriers: Vec<Carrier>,
    routes: Vec<Route>,
    shipments: Vec<Shipment>,
    /// Unbooked shipment indices per lane, and booked ones (with their base route).
    unbooked: Vec<Vec<usize>>,
    booked: Vec<(usize, usize)>,
}

fn wh(place: &str) -> String {
    format!("WH-{}", place[..3].to_uppercase())
}

impl Net {
    fn generate(r: &mut impl Rng) -> Net {
        let mut places = PLACES.to_vec();
        places.shuffle(r);
        let nw = r.random_range(3..=5);
        let warehouses: Vec<&str> = places[..nw].to_vec();
        let dests: Vec<&str> = places[nw..nw + r.random_range(5..=8)].to_vec();
        let mut lanes = Vec::new();
        for w in &warehouses {
            for d in &dests {
                lanes.push((*w, *d));
            }
        }
        lanes.shuffle(r);
        lanes.truncate(r.random_range(9..=13));
        let mut names = CARRIER_NAMES.to_vec();
        names.shuffle(r);
        let nc = r.random_range(5..=7);
        let carriers: Vec<Carrier> = (0..nc)
            .map(|i| Carrier {
                id: format!("CR-{}", 10 + i * 3 + r.random_range(0..3)),
                name: names[i],
                hazmat: i == 0 || r.random_bool(0.45),
                max_kg: if i == 0 {
                    2000
                } else {
                    [400, 600, 800, 1200, 2000][r.random_range(0..5)]
                },
            })
            .collect();
        let mut routes = Vec::new();
        let mut rid = r.random_range(100..500);
        for lane in 0..lanes.len() {
            let n = r.random_range(3..=6usize).min(nc);
            let mut cs: Vec<usize> = (0..nc).collect();
            cs.shuffle(r);
            // The first carrier is hazmat-certified with a large limit on some lane route, so
            // every shipment has at least one physically possible route.
            if !cs[..n].contains(&0) {
                cs[0] = 0;
            }
            for &c in cs.iter().take(n) {
                let days = r.random_range(1..=8);
                // Faster routes tend to cost more.
                let fee = r.random_range(1500..=9000) + (9 - days) * r.random_range(300..=900);
                let per_kg = r.random_range(8..=40) + (9 - days) * r.random_range(1..=6);
                routes.push(Route {
                    id: format!("R-{rid}"),
                    lane,
                    carrier: c,
                    days,
                    fee,
                    per_kg,
                    capacity: r.random_range(15..=60) * 100,
                });
                rid += r.random_range(1..=9);
            }
        }
        let mut shipments = Vec::new();
        let mut unbooked = vec![Vec::new(); lanes.len()];
        let mut booked = Vec::new();
        let mut sid = r.random_range(1000..5000);
        let mut load: BTreeMap<usize, i64> = BTreeMap::new();
        for (lane, ub) in unbooked.iter_mut().enumerate() {
            let lane_routes: Vec<usize> =
                (0..routes.len()).filter(|&i| routes[i].lane == lane).collect();
            for k in 0..8 {
                let hazmat = r.random_bool(0.25);
                let kg = r.random_range(2..=90) * 10;
                // Deadlines leave room for at least one physically possible route (carrier 0
                // serves every lane) and usually several.
                let min_days = lane_routes
                    .iter()
                    .filter(|&&i| {
                        let c = &carriers[routes[i].carrier];
                        (!hazmat || c.hazmat) && c.max_kg >= kg
                    })
                    .map(|&i| routes[i].days)
                    .min()
                    .unwrap_or(1);
                let deadline = min_days + r.random_range(1..=4);
                let idx = shipments.len();
                shipments.push(Shipment { id: format!("SH-{sid}"), lane, kg, hazmat, deadline });
                sid += r.random_range(1..=7);
                if k < 5 {
                    ub.push(idx);
                } else {
                    // Booked on some valid route (base state).
                    let ok: Vec<usize> = lane_routes
                        .iter()
                        .copied()
                        .filter(|&ri| {
                            let c = &carriers[routes[ri].carrier];
                            routes[ri].days <= deadline
                                && (!hazmat || c.hazmat)
                                && c.max_kg >= kg
                                && load.get(&ri).copied().unwrap_or(0) + kg <= routes[ri].capacity
                        })
                        .collect();
                    match ok.get(r.random_range(0..ok.len().max(1))) {
                        Some(&ri) => {
                            *load.entry(ri).or_default() += kg;
                            booked.push((idx, ri));
                        }
                        None => ub.push(idx),
                    }
                }
            }
        }
        Net { lanes, carriers, routes, shipments, unbooked, booked }
    }

    fn route_by_id(&self, id: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.id == id)
    }
    fn shipment_by_id(&self, id: &str) -> Option<usize> {
        self.shipments.iter().position(|s| s.id == id)
    }
    fn cost(&self, s: usize, r: usize) -> i64 {
        self.routes[r].fee + self.routes[r].per_kg * self.shipments[s].kg
    }
}

/// The dynamic part, parsed from the state JSON.
struct Dyn {
    bookings: BTreeMap<String, String>,
    suspended: BTreeSet<String>,
    capacity: BTreeMap<String, i64>,
}

impl Dyn {
    fn from_state(v: &Value) -> Dyn {
        let bookings = v
            .get("bookings")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
            })
            .unwrap_or_default();
        let suspended = v
            .get("suspended_routes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let capacity = v
            .get("capacity_overrides_kg")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_i64()?))).collect())
            .unwrap_or_default();
        Dyn { bookings, suspended, capacity }
    }
    fn to_value(&self) -> Value {
        json!({
            "bookings": self.bookings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
            "suspended_routes": self.suspended.iter().collect::<Vec<_>>(),
            "capacity_overrides_kg": self.capacity.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
        })
    }
    fn capacity(&self, net: &Net, r: usize) -> i64 {
        self.capacity.get(&net.routes[r].id).copied().unwrap_or(net.routes[r].capacity)
    }
    fn load(&self, net: &Net, r: usize) -> i64 {
        let rid = &net.routes[r].id;
        self.bookings
            .iter()
            .filter(|(_, v)| *v == rid)
            .filter_map(|(s, _)| net.shipment_by_id(s))
            .map(|s| net.shipments[s].kg)
            .sum()
    }
}

/// What the task asks beyond the shipments' own data.
#[derive(Clone, Debug, Default)]
struct Rules {
    banned_carrier: Option<usize>,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Book unbooked shipments (1 independent, 2 on different lanes, or 2-3 on one lane).
    Book(Vec<usize>),
    /// A route is suspended: rebook its shipments (plus optionally book one more on the lane).
    Reroute { route: usize, extra: Option<usize> },
}

/// The family.
pub struct LogisticsFamily;

impl Family for LogisticsFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: INSTANCES, tasks_per_instance: TASKS }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Error::check_instance_seed(NAME, instance_seed, INSTANCES)?;
        Ok(Arc::new(LogisticsInstance::build(instance_seed)?))
    }
}

/// One network and its base bookings.
pub struct LogisticsInstance {
    base: Base,
    net: Net,
    base_dyn: Value,
    /// Candidate task kinds per difficulty (permuted).
    kinds: [Vec<(Kind, bool)>; 5],
    /// The candidates that make a task (a unique feasible optimum): slot `j` of a difficulty
    /// takes its `j`-th, so distinct slots are distinct tasks.
    feasible: Slots,
    system_prompt: String,
}

impl LogisticsInstance {
    fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[name_hash(NAME), seed]);
        let net = Net::generate(&mut r);
        let base_dyn = Dyn {
            bookings: net
                .booked
                .iter()
                .map(|&(s, ri)| (net.shipments[s].id.clone(), net.routes[ri].id.clone()))
                .collect(),
            suspended: BTreeSet::new(),
            capacity: BTreeMap::new(),
        }
        .to_value();
        let mut kinds: [Vec<(Kind, bool)>; 5] = Default::default();
        let all_unbooked: Vec<usize> = net.unbooked.iter().flatten().copied().collect();
        // d1: one shipment.
        kinds[0] = all_unbooked.iter().map(|&s| (Kind::Book(vec![s]), false)).collect();
        // d2: two shipments on different lanes (independent lookups in parallel).
        let mut perm = all_unbooked.clone();
        perm.shuffle(&mut r);
        let mut seen = BTreeSet::new();
        for gap in 1..=3 {
            for i in 0..perm.len().saturating_sub(gap) {
                let (a, b) = (perm[i], perm[i + gap]);
                if net.shipments[a].lane != net.shipments[b].lane
                    && seen.insert((a.min(b), a.max(b)))
                {
                    kinds[1].push((Kind::Book(vec![a, b]), false));
                    // d3 also: such a pair with a banned carrier.
                    kinds[2].push((Kind::Book(vec![a, b]), true));
                }
            }
        }
        // d3: reroute the shipments of a suspended route, alone or with one more booking, with
        // or without a banned carrier.
        let routes_in_use: BTreeSet<usize> = net.booked.iter().map(|b| b.1).collect();
        for &ri in &routes_in_use {
            for ban in [false, true] {
                kinds[2].push((Kind::Reroute { route: ri, extra: None }, ban));
                for &s in &net.unbooked[net.routes[ri].lane] {
                    kinds[2].push((Kind::Reroute { route: ri, extra: Some(s) }, ban));
                }
            }
        }
        // d4: pairs on one lane (capacity coupling); d5: pairs and triples on one lane, and such
        // a pair with a shipment of the next lane, with a banned carrier.
        for (lane, ub) in net.unbooked.iter().enumerate() {
            let next = &net.unbooked[(lane + 1) % net.unbooked.len()];
            for i in 0..ub.len() {
                for j in i + 1..ub.len() {
                    kinds[3].push((Kind::Book(vec![ub[i], ub[j]]), false));
                    kinds[4].push((Kind::Book(vec![ub[i], ub[j]]), true));
                    for &x in next.iter().take(2) {
                        kinds[4].push((Kind::Book(vec![ub[i], ub[j], x]), true));
                    }
                    for k in j + 1..ub.len() {
                        kinds[4].push((Kind::Book(vec![ub[i], ub[j], ub[k]]), true));
                    }
                }
            }
        }
        for (d, k) in kinds.iter_mut().enumerate() {
            k.shuffle(&mut r);
            if (k.len() as u64) < TASKS / 5 {
                return Err(Error::Generation {
                    family: NAME.into(),
                    reason: format!(
                        "instance {seed}: only {} tasks of difficulty {}",
                        k.len(),
                        d + 1
                    ),
                });
            }
        }
        let mut allowed = vec!["list_shipments", "get_shipment", "find_routes", "get_carrier"];
        if r.random_bool(0.5) {
            allowed.push("quote_route");
        }
        allowed.extend(["book_shipment", "cancel_booking"]);
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let company = [
            "Meridian Retail",
            "Harbor Foods",
            "Quillon Pharma",
            "Tessel Hardware",
            "Lumo Apparel",
        ][r.random_range(0..5)];
        let system_prompt = format!(
            "You are the freight desk agent for {company}. Shipments leave our warehouses ({}) for customer cities on carrier routes. \
             Policy: a shipment must arrive within its deadline (route transit days <= the shipment's deadline_days); hazardous goods only travel with hazmat-certified carriers; \
             a carrier's max_weight_kg applies per shipment; a route cannot carry more than its remaining capacity; suspended routes take no bookings. \
             Among the routes that satisfy every rule, always choose the plan with the lowest total cost (fee + per-kg rate x weight), and do not touch bookings you were not asked to change. \
             Costs are in EUR.",
            net.lanes
                .iter()
                .map(|l| wh(l.0))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(LogisticsInstance {
            base,
            net,
            base_dyn,
            kinds,
            feasible: Default::default(),
            system_prompt,
        })
    }

    /// Valid routes for shipment `s` under the task's rules and deadline, ignoring capacity.
    fn valid_routes(&self, s: usize, dy: &Dyn, rules: &Rules) -> Vec<usize> {
        let sh = &self.net.shipments[s];
        (0..self.net.routes.len())
            .filter(|&ri| {
                let rt = &self.net.routes[ri];
                let c = &self.net.carriers[rt.carrier];
                rt.lane == sh.lane
                    && !dy.suspended.contains(&rt.id)
                    && rt.days <= sh.deadline
                    && (!sh.hazmat || c.hazmat)
                    && c.max_kg >= sh.kg
                    && rules.banned_carrier != Some(rt.carrier)
            })
            .collect()
    }

    /// Exhaustive search: the cheapest and second-cheapest total over joint assignments that
    /// respect capacity (targets already removed from the bookings in `dy`).
    fn optimise(
        &self,
        targets: &[usize],
        dy: &Dyn,
        rules: &Rules,
    ) -> Option<(Vec<usize>, i64, i64)> {
        let options: Vec<Vec<usize>> =
            targets.iter().map(|&s| self.valid_routes(s, dy, rules)).collect();
        if options.iter().any(Vec::is_empty) {
            return None;
        }
        let mut best: Option<(Vec<usize>, i64)> = None;
        let mut second = i64::MAX;
        let mut idx = vec![0usize; targets.len()];
        loop {
            let assign: Vec<usize> = idx.iter().enumerate().map(|(t, &i)| options[t][i]).collect();
            let mut extra: BTreeMap<usize, i64> = BTreeMap::new();
            for (t, &ri) in assign.iter().enumerate() {
                *extra.entry(ri).or_default() += self.net.shipments[targets[t]].kg;
            }
            let fits = extra
                .iter()
                .all(|(&ri, &kg)| dy.load(&self.net, ri) + kg <= dy.capacity(&self.net, ri));
            if fits {
                let cost: i64 =
                    assign.iter().enumerate().map(|(t, &ri)| self.net.cost(targets[t], ri)).sum();
                match &best {
                    Some((_, b)) if cost >= *b => second = second.min(cost),
                    _ => {
                        if let Some((_, b)) = &best {
                            second = second.min(*b);
                        }
                        best = Some((assign, cost));
                    }
                }
            }
            // Next combination.
            let mut t = 0;
            loop {
                if t == idx.len() {
                    return best.map(|(a, c)| (a, c, second));
                }
                idx[t] += 1;
                if idx[t] < options[t].len() {
                    break;
                }
                idx[t] = 0;
                t += 1;
            }
        }
    }

    /// The task of candidate `salt` (its index in the difficulty's list): a function of the
    /// candidate alone, numbered `task_seed`.
    fn make(
        &self,
        task_seed: u64,
        difficulty: u8,
        kind: &Kind,
        ban: bool,
        salt: u64,
    ) -> Option<TaskSpec> {
        let net = &self.net;
        let mut dy = Dyn::from_state(&self.base_dyn);
        let mut r = rng(&[name_hash(NAME), self.base.instance_seed, salt]);
        let mut rules = Rules::default();
        let (targets, rerouted, suspended_route): (Vec<usize>, Vec<usize>, Option<usize>) =
            match kind {
                Kind::Book(ss) => (ss.clone(), vec![], None),
                Kind::Reroute { route, extra } => {
                    let on: Vec<usize> =
                        net.booked.iter().filter(|b| b.1 == *route).map(|b| b.0).collect();
                    dy.suspended.insert(net.routes[*route].id.clone());
                    let mut t = on.clone();
                    t.extend(extra.iter().copied());
                    (t, on, Some(*route))
                }
            };
        // Targets being rerouted are cancelled first when computing the optimum.
        let mut after_cancel = Dyn::from_state(&dy.to_value());
        for &s in &rerouted {
            after_cancel.bookings.remove(&net.shipments[s].id);
        }
        if ban {
            // Ban a carrier of the unconstrained optimum (so the rule matters) for which the
            // task stays feasible; rotate the choice by the candidate.
            let (assign, ..) = self.optimise(&targets, &after_cancel, &rules)?;
            let mut used: Vec<usize> = assign.iter().map(|&ri| net.routes[ri].carrier).collect();
            used.sort();
            used.dedup();
            let start = (salt as usize) % used.len().max(1);
            rules.banned_carrier =
                (0..used.len()).map(|i| used[(start + i) % used.len()]).find(|&c| {
                    let trial = Rules { banned_carrier: Some(c) };
                    self.optimise(&targets, &after_cancel, &trial).is_some_and(|(_, b, s2)| s2 > b)
                });
            // Without a ban that matters this would be the unbanned task of a lower difficulty.
            rules.banned_carrier?;
        }
        // Capacity coupling where targets share a lane: the shared cheapest route fits only one.
        let same_lane = targets.iter().enumerate().any(|(i, &a)| {
            targets[i + 1..].iter().any(|&b| net.shipments[a].lane == net.shipments[b].lane)
        });
        if same_lane {
            let (assign, ..) = self.optimise(&targets, &after_cancel, &rules)?;
            let mut counts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (t, &ri) in assign.iter().enumerate() {
                counts.entry(ri).or_default().push(targets[t]);
            }
            if let Some((&ri, ss)) = counts.iter().find(|(_, ss)| ss.len() > 1) {
                let max_kg = ss.iter().map(|&s| net.shipments[s].kg).max().unwrap_or(0);
                let cap = after_cancel.load(net, ri) + max_kg + r.random_range(0..10);
                dy.capacity.insert(net.routes[ri].id.clone(), cap);
                after_cancel.capacity.insert(net.routes[ri].id.clone(), cap);
            }
        }
        let (assign, best, second) = self.optimise(&targets, &after_cancel, &rules)?;
        if second <= best {
            return None; // not unique
        }
        // Prompt.
        let ids = |v: &[usize]| v.iter().map(|&s| net.shipments[s].id.clone()).collect::<Vec<_>>();
        let mut prompt = match (kind, suspended_route) {
            (Kind::Reroute { extra, .. }, Some(ri)) => {
                let mut p = format!(
                    "Carrier notice: route {} has been suspended effective immediately. Rebook every shipment currently booked on it onto the cheapest alternative that still satisfies our policy.",
                    net.routes[ri].id
                );
                if let Some(e) = extra {
                    p.push_str(&format!(" Also book the new shipment {} on the same lane at the lowest cost, taking the rebookings into account.", net.shipments[*e].id));
                }
                p
            }
            _ if targets.len() == 1 => {
                format!(
                    "Please book shipment {} on the cheapest route that satisfies our shipping policy.",
                    net.shipments[targets[0]].id
                )
            }
            _ => format!(
                "Please book shipments {} so that every one satisfies our shipping policy and the total cost is as low as possible.",
                ids(&targets).join(", ")
            ),
        };
        if let Some(c) = rules.banned_carrier {
            prompt.push_str(&format!(
                " Note: carrier {} ({}) is under a compliance review, so do not use it for these shipments.",
                net.carriers[c].name, net.carriers[c].id
            ));
        }
        // Reference.
        let mut turns = Vec::new();
        let lanes: Vec<usize> = {
            let mut l: Vec<usize> = targets.iter().map(|&s| net.shipments[s].lane).collect();
            l.dedup();
            l.sort();
            l.dedup();
            l
        };
        if suspended_route.is_some() {
            turns.push(turn(
                "I need to find which shipments are booked on the suspended route.",
                vec![call(
                    "list_shipments",
                    json!({ "status": "booked", "origin": null, "destination": null }),
                )],
            ));
        }
        turns.push(turn(
            format!(
                "I'll fetch the details (weight, hazmat, deadline) of {}.",
                ids(&targets).join(", ")
            ),
            targets
                .iter()
                .map(|&s| call("get_shipment", json!({ "shipment_id": net.shipments[s].id })))
                .collect(),
        ));
        turns.push(turn(
            "Next, the routes on the lane(s) involved.",
            lanes
                .iter()
                .map(|&l| {
                    call(
                        "find_routes",
                        json!({ "origin": wh(net.lanes[l].0), "destination": net.lanes[l].1 }),
                    )
                })
                .collect(),
        ));
        // Carriers of routes that meet deadlines and are active: check certification/limits.
        let mut carriers: BTreeSet<usize> = BTreeSet::new();
        for &s in &targets {
            for ri in 0..net.routes.len() {
                let rt = &net.routes[ri];
                if rt.lane == net.shipments[s].lane
                    && rt.days <= net.shipments[s].deadline
                    && !dy.suspended.contains(&rt.id)
                {
                    carriers.insert(rt.carrier);
                }
            }
        }
        turns.push(turn(
            "Routes that meet the deadlines use these carriers; I'll check their hazmat certification and weight limits in parallel.",
            carriers.iter().map(|&c| call("get_carrier", json!({ "carrier_id": net.carriers[c].id }))).collect(),
        ));
        if !rerouted.is_empty() {
            turns.push(turn(
                "The affected bookings must be cancelled before they can be rebooked.",
                rerouted
                    .iter()
                    .map(|&s| call("cancel_booking", json!({ "shipment_id": net.shipments[s].id })))
                    .collect(),
            ));
        }
        let plan: Vec<String> = targets
            .iter()
            .zip(&assign)
            .map(|(&s, &ri)| {
                format!(
                    "{} -> {} ({} EUR)",
                    net.shipments[s].id,
                    net.routes[ri].id,
                    money(net.cost(s, ri))
                )
            })
            .collect();
        turns.push(turn(
            format!(
                "Comparing all valid combinations (deadline, hazmat, weight limit, remaining capacity{}), the cheapest plan is {}, total {} EUR. Booking it.",
                if rules.banned_carrier.is_some() { ", banned carrier" } else { "" },
                plan.join(", "),
                money(best)
            ),
            targets
                .iter()
                .zip(&assign)
                .map(|(&s, &ri)| call("book_shipment", json!({ "shipment_id": net.shipments[s].id, "route_id": net.routes[ri].id })))
                .collect(),
        ));
        let initial = dy.to_value();
        let hidden = json!({
            "targets": ids(&targets),
            "deadlines": targets.iter().map(|&s| net.shipments[s].deadline).collect::<Vec<_>>(),
            "banned_carrier": rules.banned_carrier.map(|c| net.carriers[c].id.clone()),
            "optimal_cost_cents": best,
            "reference_plan": plan,
        });
        Some(self.base.finish(
            task_seed,
            TaskParts {
                difficulty,
                system_prompt: self.system_prompt.clone(),
                user_prompt: prompt,
                initial_state: initial,
                turns,
                final_answer: format!("Done: {}. Total cost {} EUR.", plan.join("; "), money(best)),
                hidden,
            },
        ))
    }

    fn route_json(&self, ri: usize, dy: &Dyn) -> Value {
        let rt = &self.net.routes[ri];
        json!({
            "route_id": rt.id,
            "carrier_id": self.net.carriers[rt.carrier].id,
            "transit_days": rt.days,
            "fee_eur": money(rt.fee),
            "per_kg_eur": money(rt.per_kg),
            "remaining_capacity_kg": dy.capacity(&self.net, ri) - dy.load(&self.net, ri),
            "status": if dy.suspended.contains(&rt.id) { "suspended" } else { "active" },
        })
    }
}

impl Instance for LogisticsInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        Error::check_task_seed(NAME, task_seed, TASKS)?;
        let (d, j) = difficulty_slot(task_seed);
        let list = &self.kinds[d as usize - 1];
        let k = self.feasible.pick(d, j, list.len(), |k| {
            self.make(task_seed, d, &list[k].0, list[k].1, k as u64).is_some()
        });
        let spec = k.and_then(|k| self.make(task_seed, d, &list[k].0, list[k].1, k as u64));
        spec.ok_or_else(|| {
            self.base
                .gen_error(format!("task {task_seed}: no candidate with a unique feasible optimum"))
        })
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let net = &self.net;
        let s = |k: &str| {
            args.get(k).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_owned()
        };
        let mut dy = Dyn::from_state(&state.0);
        let shipment = |id: &str| {
            net.shipment_by_id(id)
                .ok_or_else(|| ToolResult::error(format!("unknown shipment {id:?}")))
        };
        match name {
            "list_shipments" => {
                let status = s("status");
                let (o, d) = (s("origin"), s("destination"));
                let rows: Vec<Value> = net
                    .shipments
                    .iter()
                    .filter(|sh| {
                        let (lo, ld) = net.lanes[sh.lane];
                        let booked = dy.bookings.contains_key(&sh.id);
                        (o.is_empty()
                            || wh(lo).eq_ignore_ascii_case(&o)
                            || lo.eq_ignore_ascii_case(&o))
                            && (d.is_empty() || ld.eq_ignore_ascii_case(&d))
                            && match status.as_str() {
                                "booked" => booked,
                                "unbooked" => !booked,
                                _ => true,
                            }
                    })
                    .map(|sh| {
                        json!({
                            "shipment_id": sh.id,
                            "origin": wh(net.lanes[sh.lane].0),
                            "destination": net.lanes[sh.lane].1,
                            "route_id": dy.bookings.get(&sh.id),
                        })
                    })
                    .collect();
                ToolResult::read(&json!({ "shipments": rows }))
            }
            "get_shipment" => match shipment(&s("shipment_id")) {
                Ok(i) => {
                    let sh = &net.shipments[i];
                    ToolResult::read(&json!({
                        "shipment_id": sh.id,
                        "origin": wh(net.lanes[sh.lane].0),
                        "destination": net.lanes[sh.lane].1,
                        "weight_kg": sh.kg,
                        "hazmat": sh.hazmat,
                        "deadline_days": sh.deadline,
                        "route_id": dy.bookings.get(&sh.id),
                    }))
                }
                Err(e) => e,
            },
            "find_routes" => {
                let (o, d) = (s("origin"), s("destination"));
                let Some(lane) = net.lanes.iter().position(|(lo, ld)| {
                    (wh(lo).eq_ignore_ascii_case(&o) || lo.eq_ignore_ascii_case(&o))
                        && ld.eq_ignore_ascii_case(&d)
                }) else {
                    return ToolResult::read(
                        &json!({ "origin": o, "destination": d, "routes": [] }),
                    );
                };
                let routes: Vec<Value> = (0..net.routes.len())
                    .filter(|&ri| net.routes[ri].lane == lane)
                    .map(|ri| self.route_json(ri, &dy))
                    .collect();
                ToolResult::read(
                    &json!({ "origin": wh(net.lanes[lane].0), "destination": net.lanes[lane].1, "routes": routes }),
                )
            }
            "get_carrier" => {
                let id = s("carrier_id");
                match net.carriers.iter().find(|c| c.id.eq_ignore_ascii_case(&id)) {
                    Some(c) => ToolResult::read(&json!({
                        "carrier_id": c.id, "name": c.name, "hazmat_certified": c.hazmat, "max_weight_kg": c.max_kg,
                    })),
                    None => ToolResult::error(format!("unknown carrier {id:?}")),
                }
            }
            "quote_route" => {
                let si = match shipment(&s("shipment_id")) {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                let Some(ri) = net.route_by_id(&s("route_id")) else {
                    return ToolResult::error(format!("unknown route {:?}", s("route_id")));
                };
                if net.routes[ri].lane != net.shipments[si].lane {
                    return ToolResult::error(
                        "route does not serve this shipment's origin and destination",
                    );
                }
                ToolResult::read(
                    &json!({ "shipment_id": net.shipments[si].id, "route_id": net.routes[ri].id, "cost_eur": money(net.cost(si, ri)) }),
                )
            }
            "book_shipment" => {
                let si = match shipment(&s("shipment_id")) {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                let Some(ri) = net.route_by_id(&s("route_id")) else {
                    return ToolResult::error(format!("unknown route {:?}", s("route_id")));
                };
                let (sh, rt) = (&net.shipments[si], &net.routes[ri]);
                let c = &net.carriers[rt.carrier];
                if let Some(cur) = dy.bookings.get(&sh.id) {
                    return ToolResult::error(format!(
                        "{} is already booked on {cur}; cancel it first",
                        sh.id
                    ));
                }
                if rt.lane != sh.lane {
                    return ToolResult::error(format!(
                        "{} does not run from {} to {}",
                        rt.id,
                        wh(net.lanes[sh.lane].0),
                        net.lanes[sh.lane].1
                    ));
                }
                if dy.suspended.contains(&rt.id) {
                    return ToolResult::error(format!(
                        "{} is suspended and accepts no bookings",
                        rt.id
                    ));
                }
                if sh.hazmat && !c.hazmat {
                    return ToolResult::error(format!(
                        "{} carries hazardous goods but carrier {} is not hazmat-certified",
                        sh.id, c.id
                    ));
                }
                if sh.kg > c.max_kg {
                    return ToolResult::error(format!(
                        "{} weighs {} kg, above carrier {}'s limit of {} kg",
                        sh.id, sh.kg, c.id, c.max_kg
                    ));
                }
                let remaining = dy.capacity(net, ri) - dy.load(net, ri);
                if sh.kg > remaining {
                    return ToolResult::error(format!(
                        "{} has only {remaining} kg of capacity left; {} weighs {} kg",
                        rt.id, sh.id, sh.kg
                    ));
                }
                dy.bookings.insert(sh.id.clone(), rt.id.clone());
                state.0 = dy.to_value();
                ToolResult::write(&json!({
                    "status": "booked", "shipment_id": sh.id, "route_id": rt.id, "transit_days": rt.days, "cost_eur": money(net.cost(si, ri)),
                }))
            }
            "cancel_booking" => {
                let si = match shipment(&s("shipment_id")) {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                let id = net.shipments[si].id.clone();
                match dy.bookings.remove(&id) {
                    Some(old) => {
                        state.0 = dy.to_value();
                        ToolResult::write(
                            &json!({ "status": "cancelled", "shipment_id": id, "previous_route_id": old }),
                        )
                    }
                    None => ToolResult::error(format!("{id} has no booking to cancel")),
                }
            }
            other => ToolResult::error(format!("unknown tool {other:?}")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let net = &self.net;
        let dy = Dyn::from_state(&state.0);
        let init = Dyn::from_state(&task.initial_state.0);
        let targets: Vec<String> = task
            .hidden
            .get("targets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let banned = task.hidden.get("banned_carrier").and_then(Value::as_str);
        let optimal = task.hidden.get("optimal_cost_cents").and_then(Value::as_i64);
        let mut checks = Vec::new();
        let mut total = 0i64;
        let mut all_ok = !targets.is_empty();
        for t in &targets {
            let (ok, detail) = match (
                net.shipment_by_id(t),
                dy.bookings.get(t).and_then(|r| net.route_by_id(r)),
            ) {
                (Some(si), Some(ri)) => {
                    let (sh, rt) = (&net.shipments[si], &net.routes[ri]);
                    let c = &net.carriers[rt.carrier];
                    let problems: Vec<String> = [
                        (rt.lane != sh.lane, "route serves another lane".to_owned()),
                        (init.suspended.contains(&rt.id), "route is suspended".to_owned()),
                        (
                            rt.days > sh.deadline,
                            format!("transit {} days > deadline {}", rt.days, sh.deadline),
                        ),
                        (sh.hazmat && !c.hazmat, "carrier not hazmat-certified".to_owned()),
                        (sh.kg > c.max_kg, "over carrier weight limit".to_owned()),
                        (
                            banned == Some(c.id.as_str()),
                            format!("carrier {} is banned for this task", c.id),
                        ),
                    ]
                    .into_iter()
                    .filter_map(|(bad, why)| bad.then_some(why))
                    .collect();
                    total += net.cost(si, ri);
                    if problems.is_empty() {
                        (true, format!("on {}", rt.id))
                    } else {
                        (false, format!("on {}: {}", rt.id, problems.join(", ")))
                    }
                }
                _ => (false, "not booked".to_owned()),
            };
            all_ok &= ok;
            checks.push(Check::new(format!("booking.{t}"), ok, detail));
        }
        let over: Vec<String> = (0..net.routes.len())
            .filter(|&ri| dy.load(net, ri) > dy.capacity(net, ri))
            .map(|ri| net.routes[ri].id.clone())
            .collect();
        checks.push(Check::new(
            "capacity",
            over.is_empty(),
            if over.is_empty() {
                "respected".to_owned()
            } else {
                format!("over capacity: {}", over.join(", "))
            },
        ));
        let mut touched: Vec<String> = Vec::new();
        let keys: BTreeSet<&String> = dy.bookings.keys().chain(init.bookings.keys()).collect();
        for k in keys {
            if !targets.contains(k) && dy.bookings.get(k) != init.bookings.get(k) {
                touched.push(k.clone());
            }
        }
        checks.push(Check::new(
            "other_bookings_unchanged",
            touched.is_empty(),
            if touched.is_empty() {
                "unchanged".to_owned()
            } else {
                format!("changed: {}", touched.join(", "))
            },
        ));
        let cost_ok = all_ok && optimal == Some(total);
        checks.push(Check::new(
            "minimal_cost",
            cost_ok,
            format!(
                "total {} EUR, optimum {} EUR",
                money(total),
                optimal.map(money).unwrap_or_default()
            ),
        ));
        Verdict::from_checks(checks)
    }
}
