//! Family `logistics`: book and reroute freight shipments over a seeded network of warehouses,
//! destinations, carriers and routes (pure, no process). Routes have a carrier, transit time,
//! fixed fee, per-kg rate, capacity and status; carriers have a weight limit and a hazmat
//! certification. The booking tool enforces hard rules (capacity, suspended routes, weight,
//! hazmat); the agent must also meet each shipment's deadline, obey task rules (banned carriers)
//! and minimise the total cost. The verifier checks the final bookings: every target on a valid
//! route, capacities respected, no other booking touched, and the total cost equal to the
//! optimum found by exhaustive search at generation time (which is unique by construction).

use std::collections::{BTreeMap, BTreeSet};

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::families::common::{
    Base, Slots, TASKS, TaskParts, builtin_family, difficulty_slot, shuffled_candidates, turn,
};
use crate::framework::{Check, Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{call, money, name_hash, rng};

mod network;
mod tasks;

use network::*;

const NAME: &str = "logistics";
const VERSION: u32 = 2;

/// The family.
pub struct LogisticsFamily;

builtin_family!(LogisticsFamily, NAME, VERSION, LogisticsInstance::build);

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
