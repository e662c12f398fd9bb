//! `retail`: an order service under a written policy (tau-bench style). The agent identifies
//! the customer, reads orders and products, and cancels, re-addresses, returns or exchanges
//! items, or transfers to a human when the policy forbids the request (expired return window).
//! The verifier compares the final order database with the one the reference produces.

use std::collections::HashMap;
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::common::{Base, TaskParts, difficulty_slot, interleave, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::util::{arg_str, call, money, rng};

const NAME: &str = "retail";
const VERSION: u32 = 2;

/// The retail order-service family.
pub struct Retail;

impl Family for Retail {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: 1000, tasks_per_instance: 200 }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Ok(Arc::new(Shop::build(instance_seed)?))
    }
}

const PRODUCTS: &[(&str, &str, &[&str])] = &[
    ("T-Shirt", "size", &["S", "M", "L", "XL"]),
    ("Running Shoes", "size", &["38", "39", "40", "41", "42", "43"]),
    ("Water Bottle", "capacity", &["500ml", "750ml", "1L"]),
    ("Backpack", "color", &["black", "navy", "green", "grey"]),
    ("Desk Lamp", "color", &["white", "black", "brass"]),
    ("Headphones", "color", &["black", "silver", "blue"]),
    ("Yoga Mat", "thickness", &["4mm", "6mm", "8mm"]),
    ("Coffee Mug", "color", &["red", "white", "black", "teal"]),
    ("Hoodie", "size", &["S", "M", "L", "XL"]),
    ("Phone Case", "model", &["A12", "A13", "B5", "B6"]),
];
const NAMES: &[&str] =
    &["mia", "noah", "ava", "liam", "zoe", "omar", "lena", "raj", "sofia", "ivan", "yuki", "ella"];
const LASTS: &[&str] =
    &["garcia", "kim", "patel", "smith", "rossi", "novak", "silva", "chen", "brown", "khan"];

struct Variant {
    item_id: String,
    option: &'static str,
    price: i64,
    available: bool,
}

struct Product {
    id: String,
    name: &'static str,
    option_name: &'static str,
    variants: Vec<Variant>,
}

struct User {
    id: String,
    name: String,
    email: String,
    zip: String,
    card: String,
    gift: String,
    orders: Vec<Value>,
}

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

impl Shop {
    fn build(seed: u64) -> Result<Shop> {
        let mut r = rng(&[0x4E7A, seed]);
        let allowed = vec![
            "find_user_id_by_email",
            "get_user_details",
            "get_order_details",
            "get_product_details",
            "cancel_pending_order",
            "modify_pending_order_address",
            "return_delivered_order_items",
            "exchange_delivered_order_items",
            "transfer_to_human_agents",
        ];
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let mut products = Vec::new();
        let mut items = HashMap::new();
        let mut next = r.random_range(1000..5000u64);
        for (pi, (name, opt, options)) in PRODUCTS.iter().enumerate() {
            let base_price = r.random_range(8..=150) * 100;
            let mut variants = Vec::new();
            for (vi, o) in options.iter().enumerate() {
                next += r.random_range(1..50);
                let id = format!("{next}");
                items.insert(id.clone(), (pi, vi));
                variants.push(Variant {
                    item_id: id,
                    option: o,
                    price: base_price + r.random_range(0..=20) * 50,
                    available: r.random_bool(0.75),
                });
            }
            products.push(Product {
                id: format!("P{}", 100 + pi * 7 + r.random_range(0..5)),
                name,
                option_name: opt,
                variants,
            });
        }
        let today_day = 200 + r.random_range(0..100);
        let window = [30, 30, 14, 45][r.random_range(0..4)];
        let mut users = Vec::new();
        let mut order_no = r.random_range(1000..9000u64);
        for ui in 0..r.random_range(10..=18) {
            let first = NAMES.choose(&mut r).copied().unwrap_or("sam");
            let last = LASTS.choose(&mut r).copied().unwrap_or("lee");
            let id = format!("u_{first}_{}", 10 + ui * 7);
            let card = format!("credit_card_{}", r.random_range(100_000..999_999));
            let gift = format!("gift_card_{}", r.random_range(100_000..999_999));
            let mut orders = Vec::new();
            let statuses =
                ["pending", "delivered", "delivered", "processed", "pending", "delivered"];
            for s in statuses.iter().take(r.random_range(3..=6)) {
                order_no += r.random_range(1..400);
                let mut its = Vec::new();
                let mut ps: Vec<usize> = (0..products.len()).collect();
                ps.shuffle(&mut r);
                for &pi in ps.iter().take(r.random_range(1..=3)) {
                    let p: &Product = &products[pi];
                    let v = &p.variants[r.random_range(0..p.variants.len())];
                    its.push(json!({"item_id": v.item_id, "product_id": p.id, "name": p.name, "options": {p.option_name: v.option}, "price": v.price}));
                }
                let delivered =
                    (*s == "delivered").then(|| today_day - r.random_range(1..=window * 2));
                orders.push(json!({"order_id": format!("#W{order_no}"), "status": s, "items": its, "payment_method_id": card,
                    "address": {"address": format!("{} {} St", r.random_range(1..999), ["Oak", "Pine", "Maple", "Cedar", "Elm"][r.random_range(0..5)]), "city": (["Austin", "Denver", "Boston", "Seattle"][r.random_range(0..4)]), "zip": format!("{:05}", r.random_range(10000..99999))},
                    "delivered_day": delivered, "returned_items": [], "exchanges": [], "refunds": [], "cancel_reason": null}));
            }
            users.push(User {
                id,
                name: format!("{} {}", cap(first), cap(last)),
                email: format!("{first}.{last}{}@example.com", ui),
                zip: format!("{:05}", r.random_range(10000..99999)),
                card,
                gift,
                orders,
            });
        }
        let store = ["Brightcart", "Nimbus Goods", "Everyday Outfitters"]
            .choose(&mut r)
            .copied()
            .unwrap_or("Shop")
            .to_owned();
        let mut shop = Shop {
            base,
            store,
            today_day,
            window,
            products,
            items,
            users,
            cands: Default::default(),
        };
        shop.cands = shop.candidates(&mut r);
        Ok(shop)
    }

    fn date(&self, day: i64) -> String {
        let months = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut d = day.clamp(0, 364);
        let mut m = 0;
        while d >= months[m] {
            d -= months[m];
            m += 1;
        }
        format!("2025-{:02}-{:02}", m + 1, d + 1)
    }

    fn policy(&self) -> String {
        format!(
            "You are the customer-service agent of {}. Today is {}.\nPolicy:\n1. Authenticate the user by email (find_user_id_by_email) before anything else.\n2. Only pending orders can be cancelled or have their address changed.\n3. Only delivered orders can be returned or exchanged, and only within {} days of delivery. Outside that window, do not return or exchange: transfer to a human agent with reason return_window_expired.\n4. Refunds go to the original payment method unless the user asks for their gift card.\n5. Exchanges must be to an available variant of the same product.\n6. Perform only the actions the user asked for.",
            self.store,
            self.date(self.today_day),
            self.window
        )
    }

    fn user_of(&self, state: &State) -> Option<&User> {
        let id = state.0.get("user_id")?.as_str()?;
        self.users.iter().find(|u| u.id == id)
    }
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
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
                            let total: i64 = o["items"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter(|x| {
                                            x["item_id"]
                                                .as_str()
                                                .is_some_and(|s| ids.iter().any(|i| i == s))
                                        })
                                        .map(|x| x["price"].as_i64().unwrap_or(0))
                                        .sum()
                                })
                                .unwrap_or(0);
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

/// One task of the shop, fully specified (distinct values are distinct tasks). `u` is a user,
/// `o` an index into that user's orders, `item` an index into the order's items.
#[derive(Clone, Debug)]
enum RTask {
    Cancel {
        u: usize,
        o: usize,
        reason: usize,
    },
    Address {
        u: usize,
        o: usize,
        city: usize,
    },
    /// Return some items (`gift`: refund to the gift card), and maybe cancel a pending order.
    Return {
        u: usize,
        o: usize,
        items: Vec<usize>,
        gift: bool,
        cancel: Option<(usize, usize)>,
    },
    /// Exchange one item for another variant (`gift`: pay the difference with the gift card),
    /// and maybe cancel a pending order too.
    Exchange {
        u: usize,
        o: usize,
        item: usize,
        new_id: String,
        gift: bool,
        cancel: Option<(usize, usize)>,
    },
    /// A return after the window (transfer), and maybe cancel a pending order too.
    Expired {
        u: usize,
        o: usize,
        item: usize,
        cancel: Option<(usize, usize)>,
    },
}

/// The reasons `cancel_pending_order` accepts (its schema's enum).
const CANCEL_REASONS: &[&str] = &["no longer needed", "ordered by mistake"];
const NEW_CITIES: &[&str] = &["Portland", "Chicago", "Miami", "Phoenix", "Atlanta", "Tucson"];

impl Shop {
    /// The candidate tasks of each difficulty, in slot order.
    fn candidates(&self, r: &mut impl Rng) -> [Vec<RTask>; 5] {
        let in_window = |o: &Value| {
            o["status"] == "delivered"
                && o["delivered_day"].as_i64().is_some_and(|d| self.today_day - d <= self.window)
        };
        let expired = |o: &Value| {
            o["status"] == "delivered"
                && o["delivered_day"].as_i64().is_some_and(|d| self.today_day - d > self.window)
        };
        let n_items = |o: &Value| o["items"].as_array().map_or(0, Vec::len);
        let (mut cancels, mut addresses, mut returns, mut gifts) = (vec![], vec![], vec![], vec![]);
        let (mut exchanges, mut expireds, mut pendings) = (vec![], vec![], vec![]);
        for (u, user) in self.users.iter().enumerate() {
            for (o, order) in user.orders.iter().enumerate() {
                if order["status"] == "pending" {
                    pendings.push((u, o));
                    cancels.extend((0..CANCEL_REASONS.len()).map(|reason| RTask::Cancel {
                        u,
                        o,
                        reason,
                    }));
                    addresses.extend((0..NEW_CITIES.len()).map(|city| RTask::Address {
                        u,
                        o,
                        city,
                    }));
                }
                if in_window(order) {
                    for gift in [false, true] {
                        returns.extend((0..n_items(order)).map(|i| (u, o, vec![i], gift)));
                        if n_items(order) > 1 {
                            gifts.push(RTask::Return {
                                u,
                                o,
                                items: (0..n_items(order)).collect(),
                                gift,
                                cancel: None,
                            });
                        }
                    }
                    for (item, it) in order["items"].as_array().into_iter().flatten().enumerate() {
                        let Some(&(pi, vi)) =
                            it["item_id"].as_str().and_then(|id| self.items.get(id))
                        else {
                            continue;
                        };
                        for (j, v) in self.products[pi].variants.iter().enumerate() {
                            if j != vi && v.available {
                                exchanges.push((u, o, item, v.item_id.clone()));
                            }
                        }
                    }
                }
                if expired(order) {
                    expireds.extend((0..n_items(order)).map(|item| (u, o, item)));
                }
            }
        }
        let with_cancel = |u: usize| -> Vec<(usize, usize)> {
            pendings
                .iter()
                .filter(|p| p.0 == u)
                .flat_map(|&(_, o)| (0..CANCEL_REASONS.len()).map(move |reason| (o, reason)))
                .collect()
        };
        let plain_returns = returns
            .iter()
            .map(|(u, o, items, gift)| RTask::Return {
                u: *u,
                o: *o,
                items: items.clone(),
                gift: *gift,
                cancel: None,
            })
            .collect();
        let return_cancels = returns
            .iter()
            .flat_map(|(u, o, items, gift)| {
                with_cancel(*u).into_iter().map(move |c| RTask::Return {
                    u: *u,
                    o: *o,
                    items: items.clone(),
                    gift: *gift,
                    cancel: Some(c),
                })
            })
            .collect();
        let plain_exchanges = exchanges
            .iter()
            .flat_map(|(u, o, item, new_id)| {
                [false, true].map(|gift| RTask::Exchange {
                    u: *u,
                    o: *o,
                    item: *item,
                    new_id: new_id.clone(),
                    gift,
                    cancel: None,
                })
            })
            .collect();
        let plain_expired = expireds
            .iter()
            .map(|&(u, o, item)| RTask::Expired { u, o, item, cancel: None })
            .collect();
        let expired_cancels = expireds
            .iter()
            .flat_map(|&(u, o, item)| {
                with_cancel(u).into_iter().map(move |c| RTask::Expired {
                    u,
                    o,
                    item,
                    cancel: Some(c),
                })
            })
            .collect();
        let exchange_cancels = exchanges
            .iter()
            .flat_map(|(u, o, item, new_id)| {
                with_cancel(*u).into_iter().map(move |c| RTask::Exchange {
                    u: *u,
                    o: *o,
                    item: *item,
                    new_id: new_id.clone(),
                    gift: false,
                    cancel: Some(c),
                })
            })
            .collect();
        [
            interleave(vec![cancels, addresses], r),
            interleave(vec![plain_returns, plain_expired], r),
            interleave(vec![plain_exchanges, gifts], r),
            interleave(vec![return_cancels, expired_cancels], r),
            interleave(vec![exchange_cancels], r),
        ]
    }

    fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0x4E7A, self.base.instance_seed, task_seed]);
        let (difficulty, j) = difficulty_slot(task_seed);
        // A difficulty without candidates in this instance borrows the next one's.
        let Some(list) =
            (0..5).map(|k| &self.cands[(difficulty as usize - 1 + k) % 5]).find(|l| !l.is_empty())
        else {
            return Err(self.base.gen_error("no user has an actionable order"));
        };
        let task = &list[j % list.len()];
        let (RTask::Cancel { u, .. }
        | RTask::Address { u, .. }
        | RTask::Return { u, .. }
        | RTask::Exchange { u, .. }
        | RTask::Expired { u, .. }) = *task;
        let user = &self.users[u];
        let mut turns = vec![
            turn(
                "Authenticate the user by email first.",
                vec![call("find_user_id_by_email", json!({"email": user.email}))],
            ),
            turn(
                "Get the user's details and orders.",
                vec![call("get_user_details", json!({"user_id": user.id}))],
            ),
        ];
        let order_id =
            |o: usize| user.orders[o]["order_id"].as_str().unwrap_or_default().to_owned();
        let mut asks = Vec::new();
        let add_cancel = |turns: &mut Vec<_>, asks: &mut Vec<String>, o: usize, reason: usize| {
            let reason = CANCEL_REASONS[reason];
            let oid = order_id(o);
            turns.push(turn(
                format!("Check that {oid} is still pending."),
                vec![call("get_order_details", json!({"order_id": oid}))],
            ));
            turns.push(turn(
                "It is pending; cancel it with the stated reason.",
                vec![call("cancel_pending_order", json!({"order_id": oid, "reason": reason}))],
            ));
            asks.push(format!("please cancel my order {oid}, it was {reason}"));
        };
        let kind = match task {
            RTask::Cancel { o, reason, .. } => {
                add_cancel(&mut turns, &mut asks, *o, *reason);
                "cancel"
            }
            RTask::Address { o, city, .. } => {
                let oid = order_id(*o);
                let (a, c, z) = (
                    format!("{} Harbor Road", r.random_range(10..999)),
                    NEW_CITIES[*city],
                    format!("{:05}", r.random_range(10000..99999)),
                );
                turns.push(turn(
                    format!("Check {oid} is pending."),
                    vec![call("get_order_details", json!({"order_id": oid}))],
                ));
                turns.push(turn(
                    "Pending; update the address.",
                    vec![call(
                        "modify_pending_order_address",
                        json!({"order_id": oid, "address": a, "city": c, "zip": z}),
                    )],
                ));
                asks.push(format!("please ship order {oid} to {a}, {c} {z} instead"));
                "address"
            }
            RTask::Return { o, items, gift, cancel, .. } => {
                let order = &user.orders[*o];
                let oid = order_id(*o);
                let chosen: Vec<&Value> = items.iter().map(|&i| &order["items"][i]).collect();
                let names: Vec<String> = chosen
                    .iter()
                    .map(|i| format!("the {}", i["name"].as_str().unwrap_or_default()))
                    .collect();
                let ids: Vec<&Value> = chosen.iter().map(|i| &i["item_id"]).collect();
                let pm = if *gift { &user.gift } else { &user.card };
                turns.push(turn(
                    format!("Read {oid} to find the item ids and check the delivery date."),
                    vec![call("get_order_details", json!({"order_id": oid}))],
                ));
                turns.push(turn(
                    "Delivered within the window; return the items.",
                    vec![call(
                        "return_delivered_order_items",
                        json!({"order_id": oid, "item_ids": ids, "payment_method_id": pm}),
                    )],
                ));
                asks.push(format!(
                    "I want to return {} from order {oid}{}",
                    names.join(" and "),
                    if *gift { ", refund to my gift card please" } else { "" }
                ));
                if let Some((co, reason)) = cancel {
                    add_cancel(&mut turns, &mut asks, *co, *reason);
                    "return_cancel"
                } else if *gift {
                    "return_gift"
                } else {
                    "return"
                }
            }
            RTask::Exchange { o, item, new_id, gift, cancel, .. } => {
                let oid = order_id(*o);
                let it = &user.orders[*o]["items"][*item];
                let (pi, _) = self.items.get(new_id).copied().unwrap_or((0, 0));
                let p = &self.products[pi];
                let nv = p
                    .variants
                    .iter()
                    .find(|v| v.item_id == *new_id)
                    .map(|v| v.option)
                    .unwrap_or_default();
                turns.push(turn(
                    format!("Read {oid} and the product's variants in parallel."),
                    vec![
                        call("get_order_details", json!({"order_id": oid})),
                        call("get_product_details", json!({"product_id": p.id})),
                    ],
                ));
                turns.push(turn(format!("Variant {new_id} ({} {nv}) is available; exchange.", p.option_name), vec![call("exchange_delivered_order_items", json!({"order_id": oid, "item_ids": [it["item_id"]], "new_item_ids": [new_id], "payment_method_id": if *gift { &user.gift } else { &user.card }}))]));
                let pay = if *gift { "gift card" } else { "credit card" };
                asks.push(format!("please exchange the {} in order {oid} for the {} {nv} variant, paying any difference with my {pay}", p.name, p.option_name));
                if let Some((co, reason)) = cancel {
                    add_cancel(&mut turns, &mut asks, *co, *reason);
                    "exchange_cancel"
                } else {
                    "exchange"
                }
            }
            RTask::Expired { o, item, cancel, .. } => {
                let oid = order_id(*o);
                let name = user.orders[*o]["items"][*item]["name"].as_str().unwrap_or("item");
                turns.push(turn(
                    format!("Read {oid} to check the delivery date."),
                    vec![call("get_order_details", json!({"order_id": oid}))],
                ));
                turns.push(turn(format!("Delivered more than {} days ago: no return allowed; transfer to a human.", self.window), vec![call("transfer_to_human_agents", json!({"order_id": oid, "reason": "return_window_expired", "summary": format!("customer wants to return the {name} of {oid} after the window")}))]));
                asks.push(format!("I'd like to return the {name} from order {oid}"));
                if let Some((co, reason)) = cancel {
                    add_cancel(&mut turns, &mut asks, *co, *reason);
                    "expired_cancel"
                } else {
                    "expired"
                }
            }
        };
        let first = user.name.split(' ').next().unwrap_or(&user.name);
        let user_prompt = match r.random_range(0..4) {
            0 => {
                format!("Hi, I'm {} (email {}). {}.", user.name, user.email, asks.join("; also, "))
            }
            1 => format!(
                "Hello! {} here, my email is {}. {}.",
                user.name,
                user.email,
                asks.join(". Also, ")
            ),
            2 => format!("This is {first} ({}). {}. Thanks!", user.email, asks.join("; and ")),
            _ => format!(
                "Good day. My account email is {} and my name is {}. {}.",
                user.email,
                user.name,
                asks.join("; besides that, ")
            ),
        };
        let initial = json!({"user_id": user.id, "authenticated": false, "orders": user.orders, "tickets": []});
        let parts = TaskParts {
            difficulty,
            system_prompt: self.policy(),
            user_prompt,
            initial_state: initial,
            turns,
            final_answer: "All done as requested, within the store policy.".to_owned(),
            hidden: json!({"kind": kind}),
        };
        Ok(self.base.finish(task_seed, parts))
    }
}
