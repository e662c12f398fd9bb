//! `retail`: an order service under a written policy (tau-bench style). The agent identifies
//! the customer, reads orders and products, and cancels, re-addresses, returns or exchanges
//! items, or transfers to a human when the policy forbids the request (expired return window).
//! The verifier compares the final order database with the one the reference produces.

use std::collections::HashMap;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::common::{
    Base, TaskParts, builtin_family, difficulty_slot, interleave, seal, state_checks, turn,
};
use crate::error::Result;
use crate::framework::{Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{arg_str, call, money, rng};

mod data;
mod tasks;

use data::*;
use tasks::*;

const NAME: &str = "retail";
const VERSION: u32 = 2;

/// The retail order-service family.
pub struct Retail;

builtin_family!(Retail, NAME, VERSION, Shop::build);

struct Shop {
    base: Base,
    store: String,
    today_day: i64,
    window: i64,
    products: Vec<Product>,
    items: HashMap<String, (usize, usize)>,
    users: Vec<User>,
    /// Candidate tasks per difficulty, in slot order.
    cands: [Vec<RTask>; 5],
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(|s| s.trim().to_owned())).collect())
        .unwrap_or_default()
}

impl Instance for Shop {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        let spec = self.generate(task_seed)?;
        seal(self, &self.base, spec)
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let Some(user) = self.user_of(state) else {
            return ToolResult::error("session has no customer");
        };
        let authed = state.0["authenticated"] == json!(true);
        if name != "find_user_id_by_email" && !authed {
            return ToolResult::error("authenticate the user by email first");
        }
        let oid = arg_str(&args, "order_id").unwrap_or_default().trim().to_owned();
        let order_idx = state.0["orders"]
            .as_array()
            .and_then(|a| a.iter().position(|o| o["order_id"] == oid.as_str()));
        match name {
            "find_user_id_by_email" => {
                let email = arg_str(&args, "email").unwrap_or_default().trim().to_lowercase();
                match self.users.iter().find(|u| u.email == email) {
                    Some(u) if u.id == user.id => {
                        let changed = !authed;
                        state.0["authenticated"] = json!(true);
                        ToolResult {
                            state_changed: changed,
                            ..ToolResult::read(&json!({"user_id": u.id}))
                        }
                    }
                    Some(_) => ToolResult::error(
                        "that email belongs to a different account than the caller's",
                    ),
                    None => ToolResult::error(format!("no user with email {email:?}")),
                }
            }
            "get_user_details" => {
                if arg_str(&args, "user_id").unwrap_or_default().trim() != user.id {
                    return ToolResult::error("unknown user id");
                }
                let orders: Vec<&Value> = state.0["orders"]
                    .as_array()
                    .map(|a| a.iter().map(|o| &o["order_id"]).collect())
                    .unwrap_or_default();
                ToolResult::read(
                    &json!({"user_id": user.id, "name": user.name, "zip": user.zip, "payment_methods": [{"id": user.card, "kind": "credit_card"}, {"id": user.gift, "kind": "gift_card"}], "orders": orders}),
                )
            }
            "get_order_details" => match order_idx {
                None => ToolResult::error(format!("unknown order {oid:?}")),
                Some(i) => {
                    let o = &state.0["orders"][i];
                    let mut v = json!({"order_id": o["order_id"], "status": o["status"], "items": o["items"], "payment_method_id": o["payment_method_id"], "address": o["address"]});
                    if let Some(d) = o["delivered_day"].as_i64() {
                        v["delivered_on"] = json!(self.date(d));
                    }
                    for k in ["returned_items", "exchanges"] {
                        if o[k].as_array().is_some_and(|a| !a.is_empty()) {
                            v[k] = o[k].clone();
                        }
                    }
                    ToolResult::read(&v)
                }
            },
            "get_product_details" => {
                let pid = arg_str(&args, "product_id").unwrap_or_default().trim();
                match self.products.iter().find(|p| p.id == pid) {
                    None => ToolResult::error(format!("unknown product {pid:?}")),
                    Some(p) => ToolResult::read(
                        &json!({"product_id": p.id, "name": p.name, "variants": p.variants.iter().map(|v| json!({"item_id": v.item_id, "options": {p.option_name: v.option}, "price": money(v.price), "available": v.available})).collect::<Vec<_>>()}),
                    ),
                }
            }
            _ => {
                let Some(i) = order_idx else {
                    return ToolResult::error(format!("unknown order {oid:?}"));
                };
                let status = state.0["orders"][i]["status"].as_str().unwrap_or_default().to_owned();
                let pm = arg_str(&args, "payment_method_id").unwrap_or_default().trim().to_owned();
                match name {
                    "cancel_pending_order" | "modify_pending_order_address"
                        if status != "pending" =>
                    {
                        ToolResult::error(format!("order {oid} is {status}, not pending"))
                    }
                    "cancel_pending_order" => {
                        let o = &mut state.0["orders"][i];
                        o["status"] = json!("cancelled");
                        o["cancel_reason"] = json!(arg_str(&args, "reason").unwrap_or_default());
                        ToolResult::write(&json!({"order_id": oid, "status": "cancelled"}))
                    }
                    "modify_pending_order_address" => {
                        let addr = json!({"address": arg_str(&args, "address").unwrap_or_default().trim(), "city": arg_str(&args, "city").unwrap_or_default().trim(), "zip": arg_str(&args, "zip").unwrap_or_default().trim()});
                        state.0["orders"][i]["address"] = addr.clone();
                        ToolResult::write(&json!({"order_id": oid, "address": addr}))
                    }
                    "transfer_to_human_agents" => {
                        let n = state.0["tickets"].as_array().map_or(0, Vec::len) + 1;
                        let t = json!({"id": format!("TK-{n}"), "order_id": oid, "reason": arg_str(&args, "reason").unwrap_or_default()});
                        if let Some(a) = state.0["tickets"].as_array_mut() {
                            a.push(t);
                        }
                        ToolResult::write(
                            &json!({"ticket": format!("TK-{n}"), "status": "transferred"}),
                        )
                    }
                    _ => {
                        if status != "delivered" {
                            return ToolResult::error(format!(
                                "order {oid} is {status}, not delivered"
                            ));
                        }
                        let delivered = state.0["orders"][i]["delivered_day"].as_i64().unwrap_or(0);
                        if self.today_day - delivered > self.window {
                            return ToolResult::error(format!(
                                "the {}-day return window has passed",
                                self.window
                            ));
                        }
                        if pm != user.card && pm != user.gift {
                            return ToolResult::error(format!("unknown payment method {pm:?}"));
                        }
                        let ids = strs(args.get("item_ids"));
                        let in_order: Vec<String> = strs(Some(&Value::Array(
                            state.0["orders"][i]["items"]
                                .as_array()
                                .map(|a| a.iter().map(|x| x["item_id"].clone()).collect())
                                .unwrap_or_default(),
                        )));
                        let done: Vec<String> = strs(Some(&state.0["orders"][i]["returned_items"]));
                        if ids.is_empty()
                            || ids.iter().any(|x| !in_order.contains(x) || done.contains(x))
                        {
                            return ToolResult::error(
                                "item_ids must be non-empty, in the order and not yet returned or exchanged",
                            );
                        }
                        if name == "return_delivered_order_items" {
                            let o = &mut state.0["orders"][i];
                            let total: i64 = o["items"].as_array().map_or(0, |a| {
                                a.iter()
                                    .filter(|x| {
                                        x["item_id"]
                                            .as_str()
                                            .is_some_and(|s| ids.iter().any(|i| i == s))
                                    })
                                    .map(|x| x["price"].as_i64().unwrap_or(0))
                                    .sum()
                            });
                            for id in &ids {
                                if let Some(a) = o["returned_items"].as_array_mut() {
                                    a.push(json!(id));
                                }
                            }
                            if let Some(a) = o["refunds"].as_array_mut() {
                                a.push(json!({"amount": total, "to": pm}));
                            }
                            return ToolResult::write(
                                &json!({"order_id": oid, "returned": ids, "refund": money(total), "to": pm}),
                            );
                        }
                        let new_ids = strs(args.get("new_item_ids"));
                        if new_ids.len() != ids.len() {
                            return ToolResult::error(
                                "new_item_ids must pair one to one with item_ids",
                            );
                        }
                        let mut diff = 0;
                        for (a, b) in ids.iter().zip(&new_ids) {
                            let (Some(&(pa, va)), Some(&(pb, vb))) =
                                (self.items.get(a), self.items.get(b))
                            else {
                                return ToolResult::error(format!("unknown item {b:?}"));
                            };
                            if pa != pb || va == vb {
                                return ToolResult::error(format!(
                                    "{b} is not another variant of the same product as {a}"
                                ));
                            }
                            let v = &self.products[pb].variants[vb];
                            if !v.available {
                                return ToolResult::error(format!("item {b} is not available"));
                            }
                            diff += v.price - self.products[pa].variants[va].price;
                        }
                        let o = &mut state.0["orders"][i];
                        for id in &ids {
                            if let Some(a) = o["returned_items"].as_array_mut() {
                                a.push(json!(id));
                            }
                        }
                        if let Some(a) = o["exchanges"].as_array_mut() {
                            a.push(json!({"from": ids, "to": new_ids, "difference": diff, "payment_method_id": pm}));
                        }
                        ToolResult::write(
                            &json!({"order_id": oid, "exchanged": ids, "for": new_ids, "price_difference": money(diff)}),
                        )
                    }
                }
            }
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        Verdict::from_checks(state_checks(task, state, &["authenticated"]))
    }
}
