//! `banking`: ledger operations under a written policy: internal transfers, external payments
//! with fees, a daily limit, identity verification and audit notes above thresholds, disputes,
//! card freezes, spending questions, and requests the policy forbids (declined by flagging them
//! for review). The verifier compares the final ledger state with the state the reference
//! produces (ids are per-collection, so independent writes may come in any order) and checks
//! submitted amounts with tolerant money parsing.

use std::collections::HashMap;
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Map, Value, json};

use super::answer::{self, answer_check};
use super::common::{Base, TaskParts, difficulty_slot, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::util::{arg_str, call, mix, money, norm_text, permute, rng};

const NAME: &str = "banking";
const VERSION: u32 = 2;

/// The banking family.
pub struct Banking;

impl Family for Banking {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: 1000, tasks_per_instance: 200 }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Ok(Arc::new(Bank::build(instance_seed)?))
    }
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara",
    "Liam", "Mei", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wei", "Yara", "Zoe",
];
const LAST: &[&str] = &[
    "Alvarez", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
    "Tanaka", "Varga", "Weber", "Yilmaz",
];
const BANKS: &[&str] = &[
    "Northwind Savings",
    "Harbor Trust",
    "Cedar Credit Union",
    "Bluepeak Bank",
    "Meridian Bank",
    "Lakeside Federal",
    "Summit Mutual",
];
const CATEGORIES: &[(&str, &[&str])] = &[
    ("groceries", &["FreshMart", "GreenGrocer", "Daily Basket", "Corner Foods"]),
    ("dining", &["Luigi's Trattoria", "Sushi Ko", "The Burger Barn", "Cafe Aurora"]),
    ("transport", &["MetroRail", "CityCab", "FuelStop", "ParkEasy"]),
    ("utilities", &["PowerGrid Energy", "AquaCity Water", "NetWave Internet"]),
    ("entertainment", &["CineMax", "StreamFlix", "Arcadia Games"]),
    ("shopping", &["UrbanWear", "HomeNest", "TechHub", "BookNook"]),
];
const PAYEES: &[&str] = &[
    "Oakridge Property Management",
    "Sunrise Dental Clinic",
    "City Tax Office",
    "Greenfield Insurance",
    "Brightstart Daycare",
    "Pinecrest Auto Loans",
    "Riverside Gym",
    "Elm Street Landlord LLC",
    "Northstar Telecom",
    "Maple Tutoring",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Checking,
    Savings,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Checking => "checking",
            Kind::Savings => "savings",
        }
    }
}

struct Txn {
    id: String,
    date: String,
    description: String,
    category: &'static str,
    amount: i64,
}

struct Account {
    id: String,
    kind: Kind,
    balance: i64,
    history: Vec<Txn>,
}

struct Customer {
    id: String,
    name: String,
    code: String,
    accounts: Vec<usize>,
    payees: Vec<(String, String)>,
}

struct Policy {
    fee_flat: i64,
    fee_bp: i64,
    daily_limit: i64,
    verify_threshold: Option<i64>,
    audit_threshold: Option<i64>,
    min_savings: i64,
}

impl Policy {
    fn fee(&self, amount: i64) -> i64 {
        self.fee_flat + (amount * self.fee_bp + 5_000) / 10_000
    }
}

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

fn dollars(r: &mut impl Rng, lo: i64, hi: i64) -> i64 {
    r.random_range(lo..=hi) * 100 + [0, 0, 50, 25, 99][r.random_range(0..5)]
}

impl Bank {
    fn build(seed: u64) -> Result<Bank> {
        let mut r = rng(&[0xBA4C, seed]);
        let mut allowed = vec!["get_customer", "get_account", "list_transactions"];
        for t in [
            "get_fee_schedule",
            "verify_identity",
            "open_dispute",
            "freeze_card",
            "file_audit_note",
        ] {
            if r.random_bool(0.75) {
                allowed.push(t);
            }
        }
        allowed.extend(["transfer_funds", "pay_payee", "flag_for_review", "submit_answer"]);
        allowed[3..].shuffle(&mut r);
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let year = 2024 + (seed % 3) as i64;
        let mon = r.random_range(3..=12i64);
        let day = r.random_range(10..=27i64);
        let month = format!("{year}-{mon:02}");
        let prev_month = format!("{year}-{:02}", mon - 1);
        let today = format!("{month}-{day:02}");
        let policy = Policy {
            fee_flat: [0, 100, 150, 250, 300][r.random_range(0..5)],
            fee_bp: [0, 25, 50, 100][r.random_range(0..4)],
            daily_limit: r.random_range(15..=50) * 10_000,
            verify_threshold: base.has("verify_identity").then(|| r.random_range(3..=10) * 10_000),
            audit_threshold: base.has("file_audit_note").then(|| r.random_range(8..=14) * 10_000),
            min_savings: r.random_range(1..=10) * 10_000,
        };
        let mut customers = Vec::new();
        let mut accounts: Vec<Account> = Vec::new();
        let n_customers = r.random_range(12..=24);
        let mut used_ids = std::collections::HashSet::new();
        let mut txn_counter: u64 = r.random_range(10_000..60_000);
        for ci in 0..n_customers {
            let name = format!(
                "{} {}",
                FIRST.choose(&mut r).unwrap_or(&"Alex"),
                LAST.choose(&mut r).unwrap_or(&"Smith")
            );
            let id = format!("C{}", 1000 + ci * 37 + r.random_range(0..30));
            let code = format!("{:06}", r.random_range(0..1_000_000u32));
            let mut acc_ids = Vec::new();
            let n_acc = r.random_range(2..=4);
            for ai in 0..n_acc {
                let kind = if ai == 0 {
                    Kind::Checking
                } else if ai == 1 {
                    Kind::Savings
                } else if r.random_bool(0.5) {
                    Kind::Checking
                } else {
                    Kind::Savings
                };
                let mut aid;
                loop {
                    aid = format!("ACC-{}", r.random_range(1000..10_000));
                    if used_ids.insert(aid.clone()) {
                        break;
                    }
                }
                let balance = match kind {
                    Kind::Checking => dollars(&mut r, 300, 6000),
                    Kind::Savings => policy.min_savings + dollars(&mut r, 500, 20_000),
                };
                let mut history = Vec::new();
                let n_txn = r.random_range(8..=24);
                for _ in 0..n_txn {
                    txn_counter += r.random_range(1..40);
                    let (date_month, max_day) =
                        if r.random_bool(0.5) { (&month, day) } else { (&prev_month, 28) };
                    let d = r.random_range(1..=max_day);
                    let (cat, merchants) = CATEGORIES[r.random_range(0..CATEGORIES.len())];
                    let merchant = merchants.choose(&mut r).copied().unwrap_or("Shop");
                    let (description, category, amount) =
                        if kind == Kind::Savings && r.random_bool(0.7) {
                            ("Interest payment".to_owned(), "interest", r.random_range(50..3000))
                        } else if r.random_bool(0.12) {
                            ("Salary deposit".to_owned(), "income", dollars(&mut r, 1500, 4000))
                        } else {
                            (merchant.to_owned(), cat, -(r.random_range(300..25_000)))
                        };
                    history.push(Txn {
                        id: format!("T-{txn_counter}"),
                        date: format!("{date_month}-{d:02}"),
                        description,
                        category,
                        amount,
                    });
                }
                if kind == Kind::Checking && r.random_bool(0.5) {
                    // A duplicated card charge (same merchant, date and amount).
                    if let Some(t) = history.iter().find(|t| t.amount < 0) {
                        txn_counter += 1;
                        let dup = Txn {
                            id: format!("T-{txn_counter}"),
                            date: t.date.clone(),
                            description: t.description.clone(),
                            category: t.category,
                            amount: t.amount,
                        };
                        history.push(dup);
                    }
                }
                history.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
                acc_ids.push(accounts.len());
                accounts.push(Account { id: aid, kind, balance, history });
            }
            let mut payees: Vec<&str> = PAYEES.to_vec();
            payees.shuffle(&mut r);
            let payees = payees
                .iter()
                .take(r.random_range(2..=5))
                .enumerate()
                .map(|(i, p)| {
                    (format!("P-{:02}", i + 1 + r.random_range(0..3) * 10), (*p).to_owned())
                })
                .collect();
            customers.push(Customer { id, name, code, accounts: acc_ids, payees });
        }
        let by_account = accounts.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
        let bank = BANKS.choose(&mut r).copied().unwrap_or("Bank").to_owned();
        let mut rules = vec![
            format!(
                "External payments (pay_payee) may only be made from checking accounts to the customer's saved payees."
            ),
            format!(
                "Each external payment costs a fee of {} plus {:.2}% of the amount, charged as a separate transaction on the same account.",
                money(policy.fee_flat),
                policy.fee_bp as f64 / 100.0
            ),
            format!(
                "The total of external payments per customer per day may not exceed {}. Never split a payment to get around this limit.",
                money(policy.daily_limit)
            ),
            format!(
                "A savings account may never be brought below {} by a transfer.",
                money(policy.min_savings)
            ),
        ];
        if let Some(v) = policy.verify_threshold {
            rules.push(format!("Payments of {} or more require verify_identity with the customer's one-time code first. Never ask for or guess a code the customer did not give.", money(v)));
        }
        if let Some(a) = policy.audit_threshold {
            rules.push(format!("Every external payment of {} or more must get an audit note (file_audit_note) on the payment transaction whose text is exactly the payment memo.", money(a)));
        }
        rules.push("When a card charge was posted twice, dispute only the later copy (the one with the higher transaction id) with reason duplicate.".to_owned());
        rules.push("If a request breaks this policy or cannot be completed (limit, insufficient funds, minimum balance), perform no money movement at all: call flag_for_review with the matching reason and explain it to the customer.".to_owned());
        rules.push("When several decline reasons apply, use the first that applies in this order: over_daily_limit, insufficient_funds, min_balance.".to_owned());
        rules.push("Memos are recorded exactly as the customer states them.".to_owned());
        let policy_text = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {r}", i + 1))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Bank {
            base,
            bank,
            today,
            month,
            prev_month,
            customers,
            accounts,
            by_account,
            policy,
            policy_text,
        })
    }

    fn system_prompt(&self) -> String {
        format!(
            "You are the virtual assistant of {}. Today is {}. Amounts are in USD. Use the tools to \
             look things up before acting; never invent ids.\n\nBank policy:\n{}",
            self.bank, self.today, self.policy_text
        )
    }

    fn initial_state(&self, c: &Customer) -> Value {
        let mut accounts = Map::new();
        for &a in &c.accounts {
            let acc = &self.accounts[a];
            accounts.insert(acc.id.clone(), json!({"balance": acc.balance, "card": "active"}));
        }
        json!({
            "customer": c.id,
            "accounts": accounts,
            "new_transactions": [],
            "verified": false,
            "disputes": [],
            "audit_notes": [],
            "flags": [],
            "answer": null,
        })
    }

    fn customer_of(&self, state: &State) -> Option<&Customer> {
        let id = state.0.get("customer")?.as_str()?;
        self.customers.iter().find(|c| c.id == id)
    }
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

/// Variants per (customer, kind) of a difficulty (see `Bank::generate`).
const VARIANTS: usize = 8;
/// Payment memos: one per variant of a kind, in memo groups ([`MEMO_GROUPS`]) so that kinds
/// sharing the payment request's wording never share a memo.
const MEMOS: [&str; VARIANTS] = [
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
const MEMO_GROUPS: [&str; 7] =
    ["", "final ", "partial ", "advance ", "quarterly ", "overdue ", "extra "];

#[derive(Clone, Copy, Debug)]
enum TaskKind {
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
    fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
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
                        user.to_string(),
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

    fn accounts_of(&self, c: &Customer, kind: Kind) -> Vec<usize> {
        c.accounts.iter().copied().filter(|&a| self.accounts[a].kind == kind).collect()
    }
}

fn duplicate_of(acc: &Account) -> Option<(&Txn, &Txn)> {
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

fn txn_num(id: &str) -> u64 {
    id.trim_start_matches("T-").parse().unwrap_or(0)
}
