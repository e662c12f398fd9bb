//! The banking family's tasks: which (customer, kind, variant) a task seed gets, and each
//! kind's prompt, reference solution and verifier data.

use super::*;

/// Variants per (customer, kind) of a difficulty (see `Bank::generate`).
pub(super) const VARIANTS: usize = 8;

/// Payment memos: one per variant of a kind, in memo groups ([`MEMO_GROUPS`]) so that kinds
/// sharing the payment request's wording never share a memo.
pub(super) const MEMOS: [&str; VARIANTS] = [
    "rent",
    "invoice",
    "school fees",
    "insurance premium",
    "car loan",
    "membership",
    "tuition",
    "deposit",
];

/// The memo's first word by group: transfers and difficulty-2 payments (0), payments at
/// difficulty 3 (1) and 4 (2), over-limit (3), insufficient-funds (4) and shortfall (5)
/// payments, and the shortfall payments that stand in for a duplicate-charge task (6).
pub(super) const MEMO_GROUPS: [&str; 7] =
    ["", "final ", "partial ", "advance ", "quarterly ", "overdue ", "extra "];

#[derive(Clone, Copy, Debug)]
pub(super) enum TaskKind {
    Transfer,
    Freeze,
    Pay,
    Dispute,
    SpendQuestion,
    OverLimit,
    DisputeAndFreeze,
    Insufficient,
    SpendAll,
    Shortfall,
    Duplicate,
}

impl Bank {
    pub(super) fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0xBA4C, self.base.instance_seed, task_seed]);
        let (difficulty, j) = difficulty_slot(task_seed);
        let has = |t: &str| self.base.has(t);
        let kinds: Vec<TaskKind> = match difficulty {
            1 => [Some(TaskKind::Transfer), has("freeze_card").then_some(TaskKind::Freeze)]
                .into_iter()
                .flatten()
                .collect(),
            2 => [
                Some(TaskKind::Pay),
                has("open_dispute").then_some(TaskKind::Dispute),
                Some(TaskKind::SpendQuestion),
            ]
            .into_iter()
            .flatten()
            .collect(),
            3 => [
                Some(TaskKind::OverLimit),
                Some(TaskKind::Pay),
                (has("open_dispute") && has("freeze_card")).then_some(TaskKind::DisputeAndFreeze),
            ]
            .into_iter()
            .flatten()
            .collect(),
            4 => [Some(TaskKind::SpendAll), Some(TaskKind::Insufficient), Some(TaskKind::Pay)]
                .into_iter()
                .flatten()
                .collect(),
            _ => [Some(TaskKind::Shortfall), has("open_dispute").then_some(TaskKind::Duplicate)]
                .into_iter()
                .flatten()
                .collect(),
        };
        // Slot j of the difficulty takes a distinct (customer, kind, variant) triple; the
        // variant v < VARIANTS picks the memo, reason, debit, month or category, so distinct
        // triples are distinct tasks.
        let (n_cust, n_kinds) = (self.customers.len(), kinds.len().max(1));
        let space = (n_cust * n_kinds * VARIANTS) as u64;
        let key = mix(&[0xBA4C, self.base.instance_seed, u64::from(difficulty)]);
        let x = permute(j as u64 % space, space, key) as usize;
        let (ci, ki, v) = (x % n_cust, x / n_cust % n_kinds, x / n_cust / n_kinds);
        let cust = &self.customers[ci];
        let dup_account =
            cust.accounts.iter().copied().find(|&a| duplicate_of(&self.accounts[a]).is_some());
        let mut kind = kinds.get(ki).copied().unwrap_or(TaskKind::Transfer);
        let mut group = match kind {
            TaskKind::Pay if difficulty == 3 => 1,
            TaskKind::Pay if difficulty == 4 => 2,
            TaskKind::OverLimit => 3,
            TaskKind::Insufficient => 4,
            TaskKind::Shortfall => 5,
            _ => 0,
        };
        // A duplicate charge has only a few phrasings; the other variants (and customers
        // without one) are shortfall payments with memos no plain shortfall task uses.
        if matches!(kind, TaskKind::Duplicate) && (dup_account.is_none() || v >= 4) {
            kind = TaskKind::Shortfall;
            group = 6;
        }
        let checking = self.accounts_of(cust, Kind::Checking);
        let savings = self.accounts_of(cust, Kind::Savings);
        let (Some(&chk), Some(&sav)) = (checking.first(), savings.first()) else {
            return Err(self.base.gen_error("customer without checking and savings accounts"));
        };
        let intro = format!("Hi, this is {} (customer id {}).", cust.name, cust.id);
        let lookup = turn(
            "I start by looking up the customer to see their accounts and payees.",
            vec![call("get_customer", json!({"customer_id": cust.id}))],
        );
        let mut turns = vec![lookup];
        let mut hidden = json!({"kind": format!("{kind:?}")});
        let memo = format!("{}{} {}", MEMO_GROUPS[group], MEMOS[v % VARIANTS], self.month);
        let (user, final_answer) = match kind {
            TaskKind::Transfer => {
                let to_savings = r.random_bool(0.5);
                let (from, to) = if to_savings { (chk, sav) } else { (sav, chk) };
                let room = if to_savings {
                    self.accounts[from].balance
                } else {
                    self.accounts[from].balance - self.policy.min_savings
                };
                let amount = (room / 3 / 100).max(1) * 100;
                let (fa, ta) = (&self.accounts[from].id, &self.accounts[to].id);
                turns.push(turn(
                    "Check the source balance before moving money.",
                    vec![call("get_account", json!({"account_id": fa}))],
                ));
                turns.push(turn("The balance covers it and the policy allows it; transfer.", vec![call("transfer_funds", json!({"from_account": fa, "to_account": ta, "amount": amount as f64 / 100.0, "memo": memo}))]));
                (
                    format!(
                        "{intro} Please move ${} from my {} account {fa} to my {} account {ta}, memo \"{memo}\".",
                        money(amount),
                        self.accounts[from].kind.as_str(),
                        self.accounts[to].kind.as_str()
                    ),
                    format!("Done: {} moved from {fa} to {ta}.", money(amount)),
                )
            }
            TaskKind::Freeze => {
                let reason = ["lost", "stolen"][v % 2];
                let a = &self.accounts[*checking.choose(&mut r).unwrap_or(&chk)];
                turns.push(turn(
                    "Freeze the card on that account.",
                    vec![call("freeze_card", json!({"account_id": a.id, "reason": reason}))],
                ));
                let id = &a.id;
                (
                    match v / 2 {
                        0 => format!(
                            "{intro} I think my debit card for account {id} was {reason}. Please freeze it right away."
                        ),
                        1 => format!(
                            "{intro} My card on account {id} has been {reason}. Can you block it before anyone uses it?"
                        ),
                        2 => format!(
                            "{intro} Urgent: the debit card linked to {id} was {reason} today. Freeze it, please."
                        ),
                        _ => format!(
                            "{intro} Please put a freeze on the card of my account {id}; it was {reason}."
                        ),
                    },
                    format!("The card on {} is now frozen.", a.id),
                )
            }
            TaskKind::Pay | TaskKind::OverLimit | TaskKind::Insufficient | TaskKind::Shortfall => {
                let (pid, pname) = cust.payees.choose(&mut r).cloned().unwrap_or_default();
                let bal = self.accounts[chk].balance;
                let fee_of = |x: i64| self.policy.fee(x);
                let mut reads =
                    vec![call("get_account", json!({"account_id": self.accounts[chk].id}))];
                if has("get_fee_schedule") && difficulty >= 3 {
                    reads.push(call("get_fee_schedule", json!({})));
                }
                let amount = match kind {
                    TaskKind::OverLimit => self.policy.daily_limit + r.random_range(1..=20) * 1000,
                    TaskKind::Insufficient => bal + r.random_range(1..=50) * 1000,
                    TaskKind::Shortfall => {
                        let sav_room = self.accounts[sav].balance - self.policy.min_savings;
                        let cap =
                            self.policy.daily_limit.min(bal + sav_room - fee_of(bal + sav_room));
                        if cap <= bal + 200 {
                            bal.max(200) / 2
                        } else {
                            r.random_range(bal + 100..cap) / 100 * 100
                        }
                    }
                    _ => {
                        let cap = self.policy.daily_limit.min(bal - fee_of(bal)).max(100);
                        let want_big = difficulty >= 3 && r.random_bool(0.7);
                        let lo = if want_big {
                            self.policy
                                .verify_threshold
                                .or(self.policy.audit_threshold)
                                .unwrap_or(100)
                                .min(cap)
                        } else {
                            100
                        };
                        r.random_range(lo.min(cap)..=cap) / 100 * 100
                    }
                }
                .max(100);
                let needs_verify = self.policy.verify_threshold.is_some_and(|v| amount >= v);
                let needs_audit = self.policy.audit_threshold.is_some_and(|a| amount >= a);
                let code_part = if needs_verify
                    || matches!(kind, TaskKind::OverLimit | TaskKind::Insufficient)
                        && self.policy.verify_threshold.is_some()
                {
                    format!(" My one-time code is {}.", cust.code)
                } else {
                    String::new()
                };
                let user = format!(
                    "{intro} Please pay ${} to {pname} from my checking account {}, memo \"{memo}\".{code_part}",
                    money(amount),
                    self.accounts[chk].id
                );
                let fee = fee_of(amount);
                let shortfall = matches!(kind, TaskKind::Shortfall) && amount + fee > bal;
                let blocked = if amount > self.policy.daily_limit {
                    Some((
                        "over_daily_limit",
                        format!(
                            "{} exceeds the daily limit of {}",
                            money(amount),
                            money(self.policy.daily_limit)
                        ),
                    ))
                } else if amount + fee > bal && !shortfall {
                    Some((
                        "insufficient_funds",
                        format!(
                            "the balance {} does not cover {} plus the {} fee",
                            money(bal),
                            money(amount),
                            money(fee)
                        ),
                    ))
                } else {
                    None
                };
                turns.push(turn(
                    format!(
                        "Payee {pname} is {pid}. Check the checking balance{}.",
                        if reads.len() > 1 { " and the fee schedule in parallel" } else { "" }
                    ),
                    reads,
                ));
                if let Some((reason, why)) = blocked {
                    turns.push(turn(
                        format!(
                            "Policy: {why}. I must not move money; flag the request for review."
                        ),
                        vec![call(
                            "flag_for_review",
                            json!({"customer_id": cust.id, "reason": reason, "note": why}),
                        )],
                    ));
                    hidden["declined"] = json!(reason);
                    (
                        user.clone(),
                        format!("I could not make this payment: {why}. I flagged it for review."),
                    )
                } else {
                    let mut user = user;
                    let mut next_txn = 1;
                    if shortfall {
                        let need = amount + fee - bal;
                        user = format!(
                            "{intro} I need to pay ${} to {pname} today (memo \"{memo}\") from checking {}, but it may not cover it. First move exactly the amount missing for the payment plus its fee from my savings {} (memo \"top-up\"), then pay.{code_part}",
                            money(amount),
                            self.accounts[chk].id,
                            self.accounts[sav].id
                        );
                        turns.push(turn(format!("Payment {} + fee {} = {}; checking has {}. Top up {} from savings.", money(amount), money(fee), money(amount + fee), money(bal), money(need)), vec![call("get_account", json!({"account_id": self.accounts[sav].id}))]));
                        turns.push(turn("Savings stays above the minimum; transfer the shortfall.", vec![call("transfer_funds", json!({"from_account": self.accounts[sav].id, "to_account": self.accounts[chk].id, "amount": need as f64 / 100.0, "memo": "top-up"}))]));
                        next_txn += 1;
                        hidden["top_up"] = json!(money(need));
                    }
                    if needs_verify {
                        turns.push(turn(format!("{} is at or above the verification threshold; verify the code first.", money(amount)), vec![call("verify_identity", json!({"customer_id": cust.id, "code": cust.code}))]));
                    }
                    turns.push(turn("All rules are satisfied; make the payment.", vec![call("pay_payee", json!({"from_account": self.accounts[chk].id, "payee_id": pid, "amount": amount as f64 / 100.0, "memo": memo}))]));
                    if needs_audit {
                        turns.push(turn("The payment is above the audit threshold; file the audit note with the memo.", vec![call("file_audit_note", json!({"transaction_id": format!("TX-{next_txn:04}"), "note": memo}))]));
                    }
                    (user, format!("Paid {} to {pname} (fee {}).", money(amount), money(fee)))
                }
            }
            TaskKind::Dispute | TaskKind::DisputeAndFreeze => {
                let acc = &self.accounts[*checking.choose(&mut r).unwrap_or(&chk)];
                let debits: Vec<&Txn> = acc
                    .history
                    .iter()
                    .filter(|t| {
                        t.amount < 0
                            && acc
                                .history
                                .iter()
                                .filter(|u| {
                                    u.description == t.description
                                        && u.date == t.date
                                        && u.amount == t.amount
                                })
                                .count()
                                == 1
                    })
                    .collect();
                let Some(t) = debits.get(v / 3 % debits.len().max(1)) else {
                    return Err(self.base.gen_error("no disputable debit"));
                };
                let reason = ["unauthorized", "wrong_amount", "not_received"][v % 3];
                let why = match reason {
                    "unauthorized" => "I never made it",
                    "wrong_amount" => "the amount is wrong",
                    _ => "I never received what I paid for",
                };
                let month = &t.date[..7];
                turns.push(turn(
                    "List that month's transactions to find the charge id.",
                    vec![call("list_transactions", json!({"account_id": acc.id, "month": month}))],
                ));
                let mut writes =
                    vec![call("open_dispute", json!({"transaction_id": t.id, "reason": reason}))];
                let mut user = format!(
                    "{intro} There is a ${} charge from {} on {} on my account {} — {why}. Please dispute it.",
                    money(-t.amount),
                    t.description,
                    t.date,
                    acc.id
                );
                if matches!(kind, TaskKind::DisputeAndFreeze) {
                    writes.push(call(
                        "freeze_card",
                        json!({"account_id": acc.id, "reason": "suspicious_activity"}),
                    ));
                    user.push_str(
                        " Also freeze the card on that account because of suspicious activity.",
                    );
                }
                turns.push(turn(
                    format!(
                        "The charge is {}; open the dispute{}.",
                        t.id,
                        if writes.len() > 1 { " and freeze the card in parallel" } else { "" }
                    ),
                    writes,
                ));
                (user, format!("Dispute opened for {}.", t.id))
            }
            TaskKind::Duplicate => {
                let a = dup_account.unwrap_or(chk);
                let acc = &self.accounts[a];
                let Some((first, second)) = duplicate_of(acc) else {
                    return Err(self.base.gen_error("no duplicate"));
                };
                turns.push(turn(
                    "List the month's transactions to find both copies.",
                    vec![call(
                        "list_transactions",
                        json!({"account_id": acc.id, "month": &first.date[..7]}),
                    )],
                ));
                turns.push(turn(
                    format!(
                        "Copies {} and {}; policy says dispute the later one.",
                        first.id, second.id
                    ),
                    vec![call(
                        "open_dispute",
                        json!({"transaction_id": second.id, "reason": "duplicate"}),
                    )],
                ));
                let (by, on, id) = (&first.description, &first.date, &acc.id);
                (
                    match v {
                        0 => format!(
                            "{intro} I was charged twice by {by} on {on} on account {id}. Please sort it out."
                        ),
                        1 => format!(
                            "{intro} {by} billed my account {id} two times on {on}. Can you fix that?"
                        ),
                        2 => format!(
                            "{intro} There's a double charge from {by} on {on} on {id}; one of them has to go."
                        ),
                        _ => format!(
                            "{intro} On {on} the same {by} payment appears twice on account {id}. Please take care of it."
                        ),
                    },
                    format!("Disputed the duplicate {}.", second.id),
                )
            }
            TaskKind::SpendQuestion | TaskKind::SpendAll => {
                let all = matches!(kind, TaskKind::SpendAll);
                let accs: Vec<usize> = if all { cust.accounts.clone() } else { vec![chk] };
                let month = if v % 2 == 0 { self.month.clone() } else { self.prev_month.clone() };
                let cats: Vec<&str> = CATEGORIES.iter().map(|c| c.0).collect();
                let spent = |cat: &str| -> i64 {
                    accs.iter()
                        .flat_map(|&a| self.accounts[a].history.iter())
                        .filter(|t| t.category == cat && t.date.starts_with(&month) && t.amount < 0)
                        .map(|t| -t.amount)
                        .sum()
                };
                // Categories with spending first; v / 2 < 4 <= 6 categories picks a distinct one.
                let mut ordered: Vec<&str> =
                    cats.iter().copied().filter(|c| spent(c) > 0).collect();
                ordered.extend(cats.iter().copied().filter(|c| spent(c) == 0));
                let cat = ordered[v / 2 % ordered.len()];
                let total = spent(cat);
                let reads = accs
                    .iter()
                    .map(|&a| {
                        call(
                            "list_transactions",
                            json!({"account_id": self.accounts[a].id, "month": month}),
                        )
                    })
                    .collect();
                turns.push(turn(
                    format!(
                        "List {month} transactions of {} in parallel.",
                        if all { "every account" } else { "the checking account" }
                    ),
                    reads,
                ));
                turns.push(turn(
                    format!("Sum the {cat} debits: {}.", money(total)),
                    vec![call("submit_answer", json!({"answer": money(total)}))],
                ));
                hidden["answer"] = answer::money(total);
                let scope = if all {
                    "across all my accounts".to_owned()
                } else {
                    format!("on my checking account {}", self.accounts[chk].id)
                };
                (
                    format!(
                        "{intro} How much did I spend on {cat} in {month} {scope}? Count debits only (positive amount)."
                    ),
                    format!("You spent ${} on {cat} in {month}.", money(total)),
                )
            }
        };
        let parts = TaskParts {
            difficulty,
            system_prompt: self.system_prompt(),
            user_prompt: user,
            initial_state: self.initial_state(cust),
            turns,
            final_answer,
            hidden,
        };
        Ok(self.base.finish(task_seed, parts))
    }

    pub(super) fn accounts_of(&self, c: &Customer, kind: Kind) -> Vec<usize> {
        c.accounts.iter().copied().filter(|&a| self.accounts[a].kind == kind).collect()
    }
}

pub(super) fn duplicate_of(acc: &Account) -> Option<(&Txn, &Txn)> {
    for (i, t) in acc.history.iter().enumerate() {
        for u in &acc.history[i + 1..] {
            if t.amount < 0
                && t.description == u.description
                && t.date == u.date
                && t.amount == u.amount
            {
                return Some(if txn_num(&t.id) < txn_num(&u.id) { (t, u) } else { (u, t) });
            }
        }
    }
    None
}

pub(super) fn txn_num(id: &str) -> u64 {
    id.trim_start_matches("T-").parse().unwrap_or(0)
}
