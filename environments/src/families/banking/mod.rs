//! `banking`: ledger operations under a written policy: internal transfers, external payments
//! with fees, a daily limit, identity verification and audit notes above thresholds, disputes,
//! card freezes, spending questions, and requests the policy forbids (declined by flagging them
//! for review). The verifier compares the final ledger state with the state the reference
//! produces (ids are per-collection, so independent writes may come in any order) and checks
//! submitted amounts with tolerant money parsing.

use std::collections::HashMap;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Map, Value, json};

use super::answer::{self, answer_check};
use super::common::{Base, TaskParts, builtin_family, difficulty_slot, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{arg_str, call, mix, money, norm_text, permute, rng};

mod data;
mod tasks;

use data::*;

const NAME: &str = "banking";
const VERSION: u32 = 2;

/// The banking family.
pub struct Banking;

builtin_family!(Banking, NAME, VERSION, Bank::build);

struct Bank {
    base: Base,
    bank: String,
    today: String,
    month: String,
    prev_month: String,
    customers: Vec<Customer>,
    accounts: Vec<Account>,
    by_account: HashMap<String, usize>,
    policy: Policy,
    policy_text: String,
}

fn balance(state: &State, acc: &str) -> Option<i64> {
    state.0.get("accounts")?.get(acc)?.get("balance")?.as_i64()
}

fn set_balance(state: &mut State, acc: &str, v: i64) {
    if let Some(a) = state.0.get_mut("accounts").and_then(|x| x.get_mut(acc)) {
        a["balance"] = json!(v);
    }
}

fn push(state: &mut State, key: &str, v: Value) -> usize {
    match state.0.get_mut(key).and_then(Value::as_array_mut) {
        Some(a) => {
            a.push(v);
            a.len()
        }
        None => {
            state.0[key] = json!([v]);
            1
        }
    }
}

fn len_of(state: &State, key: &str) -> usize {
    state.0.get(key).and_then(Value::as_array).map_or(0, Vec::len)
}

fn to_cents(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_f64)
        .filter(|f| f.is_finite() && *f > 0.0 && *f < 1e12)
        .map(|f| (f * 100.0).round() as i64)
}

fn new_txn_id(state: &State) -> String {
    format!("TX-{:04}", len_of(state, "new_transactions") + 1)
}

impl Instance for Bank {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        let spec = self.generate(task_seed)?;
        seal(self, &self.base, spec)
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let Some(cust) = self.customer_of(state) else {
            return ToolResult::error("no customer is authenticated in this session");
        };
        let own = |acc: &str| -> Option<&Account> {
            let a = &self.accounts[*self.by_account.get(acc)?];
            (state.0.get("accounts")?.get(acc).is_some()).then_some(a)
        };
        match name {
            "get_customer" => {
                let id = arg_str(&args, "customer_id").unwrap_or_default();
                if id.trim() != cust.id {
                    return ToolResult::error(format!(
                        "customer {id:?} not found or not authenticated in this session"
                    ));
                }
                let accounts: Vec<&str> =
                    cust.accounts.iter().map(|&a| self.accounts[a].id.as_str()).collect();
                let payees: Vec<Value> =
                    cust.payees.iter().map(|(id, n)| json!({"payee_id": id, "name": n})).collect();
                ToolResult::read(
                    &json!({"customer_id": cust.id, "name": cust.name, "accounts": accounts, "payees": payees}),
                )
            }
            "get_account" => {
                let id = arg_str(&args, "account_id").unwrap_or_default();
                let Some(a) = own(id) else {
                    return ToolResult::error(format!("account {id:?} not accessible"));
                };
                let st = &state.0["accounts"][id];
                ToolResult::read(
                    &json!({"account_id": a.id, "type": a.kind.as_str(), "owner": cust.name, "balance": money(st["balance"].as_i64().unwrap_or(0)), "card_status": st["card"]}),
                )
            }
            "list_transactions" => {
                let id = arg_str(&args, "account_id").unwrap_or_default();
                let Some(a) = own(id) else {
                    return ToolResult::error(format!("account {id:?} not accessible"));
                };
                let month = arg_str(&args, "month");
                let mut rows: Vec<Value> = Vec::new();
                if let Some(new) = state.0.get("new_transactions").and_then(Value::as_array) {
                    for t in new.iter().rev().filter(|t| t["account"] == id) {
                        rows.push(json!({"id": t["id"], "date": t["date"], "description": t["description"], "category": t["category"], "amount": money(t["amount"].as_i64().unwrap_or(0))}));
                    }
                }
                for t in &a.history {
                    rows.push(json!({"id": t.id, "date": t.date, "description": t.description, "category": t.category, "amount": money(t.amount)}));
                }
                if let Some(m) = month {
                    let m = m.trim();
                    rows.retain(|t| t["date"].as_str().is_some_and(|d| d.starts_with(m)));
                }
                ToolResult::read(&json!({"account_id": id, "transactions": rows}))
            }
            "get_fee_schedule" => {
                let p = &self.policy;
                ToolResult::read(&json!({
                    "external_payment_fee_flat": money(p.fee_flat),
                    "external_payment_fee_percent": format!("{:.2}", p.fee_bp as f64 / 100.0),
                    "daily_external_limit": money(p.daily_limit),
                    "verification_threshold": p.verify_threshold.map(money),
                    "audit_threshold": p.audit_threshold.map(money),
                    "minimum_savings_balance": money(p.min_savings),
                }))
            }
            "verify_identity" => {
                let id = arg_str(&args, "customer_id").unwrap_or_default();
                let code = arg_str(&args, "code").unwrap_or_default();
                if id.trim() != cust.id || code.trim() != cust.code {
                    return ToolResult::error("verification failed: customer id or code is wrong");
                }
                let changed = state.0["verified"] != json!(true);
                state.0["verified"] = json!(true);
                ToolResult {
                    state_changed: changed,
                    ..ToolResult::read(&json!({"verified": true}))
                }
            }
            "transfer_funds" => {
                let from = arg_str(&args, "from_account").unwrap_or_default().trim();
                let to = arg_str(&args, "to_account").unwrap_or_default().trim();
                let Some(amount) = to_cents(args.get("amount")) else {
                    return ToolResult::error("amount must be a positive number");
                };
                let (Some(fa), Some(_)) = (own(from), own(to)) else {
                    return ToolResult::error(
                        "both accounts must belong to the authenticated customer",
                    );
                };
                if from == to {
                    return ToolResult::error("source and destination are the same account");
                }
                let fb = balance(state, from).unwrap_or(0);
                if fb < amount {
                    return ToolResult::error(format!(
                        "insufficient funds: balance {} < {}",
                        money(fb),
                        money(amount)
                    ));
                }
                if fa.kind == Kind::Savings && fb - amount < self.policy.min_savings {
                    return ToolResult::error(format!(
                        "minimum savings balance of {} would be broken",
                        money(self.policy.min_savings)
                    ));
                }
                let tb = balance(state, to).unwrap_or(0);
                set_balance(state, from, fb - amount);
                set_balance(state, to, tb + amount);
                let id = new_txn_id(state);
                let memo = norm_text(arg_str(&args, "memo").unwrap_or_default());
                push(
                    state,
                    "new_transactions",
                    json!({"id": id, "account": from, "date": self.today, "description": format!("Transfer to {to}"), "category": "transfer", "amount": -amount, "memo": memo}),
                );
                ToolResult::write(
                    &json!({"transaction_id": id, "from_balance": money(fb - amount), "to_balance": money(tb + amount)}),
                )
            }
            "pay_payee" => {
                let from = arg_str(&args, "from_account").unwrap_or_default().trim();
                let pid = arg_str(&args, "payee_id").unwrap_or_default().trim();
                let Some(amount) = to_cents(args.get("amount")) else {
                    return ToolResult::error("amount must be a positive number");
                };
                let Some(fa) = own(from) else {
                    return ToolResult::error(format!("account {from:?} not accessible"));
                };
                if fa.kind != Kind::Checking {
                    return ToolResult::error(
                        "external payments can only be made from a checking account",
                    );
                }
                let Some((_, payee)) = cust.payees.iter().find(|(id, _)| id == pid) else {
                    return ToolResult::error(format!("unknown payee {pid:?}"));
                };
                if let Some(v) = self.policy.verify_threshold
                    && amount >= v
                    && state.0["verified"] != json!(true)
                {
                    return ToolResult::error(format!(
                        "identity verification required for payments of {} or more",
                        money(v)
                    ));
                }
                let paid_today: i64 = state.0["new_transactions"].as_array().map_or(0, |a| {
                    a.iter()
                        .filter(|t| t["category"] == "payment")
                        .map(|t| -t["amount"].as_i64().unwrap_or(0))
                        .sum()
                });
                if paid_today + amount > self.policy.daily_limit {
                    return ToolResult::error(format!(
                        "daily external payment limit of {} exceeded",
                        money(self.policy.daily_limit)
                    ));
                }
                let fee = self.policy.fee(amount);
                let fb = balance(state, from).unwrap_or(0);
                if fb < amount + fee {
                    return ToolResult::error(format!(
                        "insufficient funds: balance {} < {} (amount + fee)",
                        money(fb),
                        money(amount + fee)
                    ));
                }
                set_balance(state, from, fb - amount - fee);
                let id = new_txn_id(state);
                let memo = norm_text(arg_str(&args, "memo").unwrap_or_default());
                push(
                    state,
                    "new_transactions",
                    json!({"id": id, "account": from, "date": self.today, "description": format!("Payment to {payee}"), "category": "payment", "amount": -amount, "memo": memo}),
                );
                let mut out = json!({"transaction_id": id, "fee": money(fee), "new_balance": money(fb - amount - fee)});
                if fee > 0 {
                    let fid = new_txn_id(state);
                    push(
                        state,
                        "new_transactions",
                        json!({"id": fid, "account": from, "date": self.today, "description": "External payment fee", "category": "fee", "amount": -fee, "memo": ""}),
                    );
                    out["fee_transaction_id"] = json!(fid);
                }
                ToolResult::write(&out)
            }
            "open_dispute" => {
                let tid = arg_str(&args, "transaction_id").unwrap_or_default().trim();
                let reason = arg_str(&args, "reason").unwrap_or_default();
                let found = cust
                    .accounts
                    .iter()
                    .flat_map(|&a| self.accounts[a].history.iter())
                    .find(|t| t.id == tid);
                let Some(t) = found else {
                    return ToolResult::error(format!("unknown transaction {tid:?}"));
                };
                if t.amount >= 0 {
                    return ToolResult::error("only debits can be disputed");
                }
                if state.0["disputes"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["transaction_id"] == tid))
                {
                    return ToolResult::error("transaction already disputed");
                }
                let n = len_of(state, "disputes") + 1;
                let id = format!("D-{n}");
                push(state, "disputes", json!({"id": id, "transaction_id": tid, "reason": reason}));
                ToolResult::write(&json!({"dispute_id": id, "status": "open"}))
            }
            "freeze_card" => {
                let id = arg_str(&args, "account_id").unwrap_or_default().trim();
                if own(id).is_none() {
                    return ToolResult::error(format!("account {id:?} not accessible"));
                }
                let acc = &mut state.0["accounts"][id];
                if acc["card"] == "frozen" {
                    return ToolResult::error("card is already frozen");
                }
                acc["card"] = json!("frozen");
                acc["freeze_reason"] = json!(arg_str(&args, "reason").unwrap_or_default());
                ToolResult::write(&json!({"account_id": id, "card_status": "frozen"}))
            }
            "file_audit_note" => {
                let tid = arg_str(&args, "transaction_id").unwrap_or_default().trim();
                let known = state.0["new_transactions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t["id"] == tid))
                    || cust
                        .accounts
                        .iter()
                        .any(|&a| self.accounts[a].history.iter().any(|t| t.id == tid));
                if !known {
                    return ToolResult::error(format!("unknown transaction {tid:?}"));
                }
                let n = len_of(state, "audit_notes") + 1;
                let id = format!("N-{n}");
                push(
                    state,
                    "audit_notes",
                    json!({"id": id, "transaction_id": tid, "note": norm_text(arg_str(&args, "note").unwrap_or_default())}),
                );
                ToolResult::write(&json!({"note_id": id}))
            }
            "flag_for_review" => {
                let id = arg_str(&args, "customer_id").unwrap_or_default();
                if id.trim() != cust.id {
                    return ToolResult::error(format!(
                        "customer {id:?} not found or not authenticated in this session"
                    ));
                }
                let n = len_of(state, "flags") + 1;
                let fid = format!("F-{n}");
                push(
                    state,
                    "flags",
                    json!({"id": fid, "reason": arg_str(&args, "reason").unwrap_or_default()}),
                );
                ToolResult::write(&json!({"flag_id": fid, "status": "sent to human review"}))
            }
            "submit_answer" => {
                state.0["answer"] = json!(arg_str(&args, "answer").unwrap_or_default());
                ToolResult::write(&json!({"status": "answer recorded"}))
            }
            other => ToolResult::error(format!("tool {other:?} is not implemented")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let has_answer = task.hidden.get("answer").is_some();
        let skip: &[&str] = if has_answer { &["answer", "verified"] } else { &["verified"] };
        let mut checks = state_checks(task, state, skip);
        if let Some(c) = answer_check(task, state, "answer") {
            checks.push(c);
        }
        Verdict::from_checks(checks)
    }
}
