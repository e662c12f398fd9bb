//! The retail family's tasks: the candidate tasks of each difficulty ([`RTask`]), one per task
//! slot, and each task's prompt, reference solution and verifier data.

use super::*;

/// One task of the shop, fully specified (distinct values are distinct tasks). `u` is a user,
/// `o` an index into that user's orders, `item` an index into the order's items.
#[derive(Clone, Debug)]
pub(super) enum RTask {
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
pub(super) const CANCEL_REASONS: &[&str] = &["no longer needed", "ordered by mistake"];

pub(super) const NEW_CITIES: &[&str] =
    &["Portland", "Chicago", "Miami", "Phoenix", "Atlanta", "Tucson"];

impl Shop {
    /// The candidate tasks of each difficulty, in slot order.
    pub(super) fn candidates(&self, r: &mut impl Rng) -> [Vec<RTask>; 5] {
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

    pub(super) fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
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
