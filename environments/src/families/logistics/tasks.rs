//! The logistics family's tasks: building an instance's candidate tasks per difficulty, the
//! exhaustive optimiser that finds the unique cheapest valid plan, and each task's prompt,
//! reference solution and verifier data.

use super::*;

impl LogisticsInstance {
    pub(super) fn build(seed: u64) -> Result<Self> {
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
        let mut kinds = shuffled_candidates(NAME, seed, "tasks", kinds, &mut r)?;
        // Spare d1 candidates, after the shuffled ones (so only an instance with too few
        // single shipments that have a unique optimum reaches them): one shipment with a banned
        // carrier.
        let spare: Vec<(Kind, bool)> =
            all_unbooked.iter().map(|&s| (Kind::Book(vec![s]), true)).collect();
        kinds[0].extend(spare);
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
    pub(super) fn valid_routes(&self, s: usize, dy: &Dyn, rules: &Rules) -> Vec<usize> {
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
    pub(super) fn optimise(
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
    pub(super) fn make(
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
            used.sort_unstable();
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
            l.sort_unstable();
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

    pub(super) fn route_json(&self, ri: usize, dy: &Dyn) -> Value {
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
