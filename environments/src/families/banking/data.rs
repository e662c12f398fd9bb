//! The banking family's data: name and merchant pools, accounts, transactions, customers and
//! the fee/limit policy, and building an instance from its seed.

use super::*;

pub(super) const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara",
    "Liam", "Mei", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wei", "Yara", "Zoe",
];

pub(super) const LAST: &[&str] = &[
    "Alvarez", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva",
    "Tanaka", "Varga", "Weber", "Yilmaz",
];

pub(super) const BANKS: &[&str] = &[
    "Northwind Savings",
    "Harbor Trust",
    "Cedar Credit Union",
    "Bluepeak Bank",
    "Meridian Bank",
    "Lakeside Federal",
    "Summit Mutual",
];

pub(super) const CATEGORIES: &[(&str, &[&str])] = &[
    ("groceries", &["FreshMart", "GreenGrocer", "Daily Basket", "Corner Foods"]),
    ("dining", &["Luigi's Trattoria", "Sushi Ko", "The Burger Barn", "Cafe Aurora"]),
    ("transport", &["MetroRail", "CityCab", "FuelStop", "ParkEasy"]),
    ("utilities", &["PowerGrid Energy", "AquaCity Water", "NetWave Internet"]),
    ("entertainment", &["CineMax", "StreamFlix", "Arcadia Games"]),
    ("shopping", &["UrbanWear", "HomeNest", "TechHub", "BookNook"]),
];

pub(super) const PAYEES: &[&str] = &[
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
pub(super) enum Kind {
    Checking,
    Savings,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Checking => "checking",
            Kind::Savings => "savings",
        }
    }
}

pub(super) struct Txn {
    pub(super) id: String,
    pub(super) date: String,
    pub(super) description: String,
    pub(super) category: &'static str,
    pub(super) amount: i64,
}

pub(super) struct Account {
    pub(super) id: String,
    pub(super) kind: Kind,
    pub(super) balance: i64,
    pub(super) history: Vec<Txn>,
}

pub(super) struct Customer {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) code: String,
    pub(super) accounts: Vec<usize>,
    pub(super) payees: Vec<(String, String)>,
}

pub(super) struct Policy {
    pub(super) fee_flat: i64,
    pub(super) fee_bp: i64,
    pub(super) daily_limit: i64,
    pub(super) verify_threshold: Option<i64>,
    pub(super) audit_threshold: Option<i64>,
    pub(super) min_savings: i64,
}

impl Policy {
    pub(super) fn fee(&self, amount: i64) -> i64 {
        self.fee_flat + (amount * self.fee_bp + 5_000) / 10_000
    }
}

pub(super) fn dollars(r: &mut impl Rng, lo: i64, hi: i64) -> i64 {
    r.random_range(lo..=hi) * 100 + [0, 0, 50, 25, 99][r.random_range(0..5)]
}

impl Bank {
    pub(super) fn build(seed: u64) -> Result<Bank> {
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

    pub(super) fn system_prompt(&self) -> String {
        format!(
            "You are the virtual assistant of {}. Today is {}. Amounts are in USD. Use the tools to \
             look things up before acting; never invent ids.\n\nBank policy:\n{}",
            self.bank, self.today, self.policy_text
        )
    }

    pub(super) fn initial_state(&self, c: &Customer) -> Value {
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

    pub(super) fn customer_of(&self, state: &State) -> Option<&Customer> {
        let id = state.0.get("customer")?.as_str()?;
        self.customers.iter().find(|c| c.id == id)
    }
}
