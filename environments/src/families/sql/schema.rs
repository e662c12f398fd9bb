//! The schema variants of the sql family: the three domains' vocabularies, the name pools
//! (cities, people, products), the resolved per-instance [`Schema`] and the distractor tables.

// ---------------------------------------------------------------------------------------------
// Schema variants.

/// One domain of the star schema: synonyms for each role and the vocabulary of the questions.
pub(super) struct Domain {
    pub(super) title: &'static str,
    pub(super) a_table: &'static [&'static str],
    pub(super) a_city: &'static [&'static str],
    pub(super) a_seg: &'static [&'static str],
    pub(super) seg_values: &'static [&'static str],
    pub(super) b_table: &'static [&'static str],
    pub(super) b_cat: &'static [&'static str],
    pub(super) cat_values: &'static [&'static str],
    pub(super) b_price: &'static [&'static str],
    pub(super) f_table: &'static [&'static str],
    pub(super) f_qty: &'static [&'static str],
    pub(super) f_status: &'static [&'static str],
    pub(super) status_values: &'static [&'static str],
    pub(super) f_month: &'static [&'static str],
    /// Nouns: a, b, fact row, quantity, price, amount (qty * price), segment, category.
    pub(super) a_noun: &'static str,
    pub(super) b_noun: &'static str,
    pub(super) f_noun: &'static str,
    pub(super) qty_noun: &'static str,
    pub(super) amount_noun: &'static str,
    pub(super) seg_noun: &'static str,
    pub(super) cat_noun: &'static str,
    pub(super) city_noun: &'static str,
}

pub(super) const DOMAINS: [Domain; 3] = [
    Domain {
        title: "an online retailer",
        a_table: &["customers", "clients", "buyers"],
        a_city: &["city", "home_city", "location"],
        a_seg: &["segment", "tier", "customer_type"],
        seg_values: &["consumer", "corporate", "small_business", "public_sector"],
        b_table: &["products", "catalog_items", "goods"],
        b_cat: &["category", "product_line", "family"],
        cat_values: &[
            "audio", "kitchen", "outdoor", "office", "toys", "fitness", "lighting", "storage",
        ],
        b_price: &["unit_price", "price", "list_price"],
        f_table: &["orders", "purchases", "order_lines"],
        f_qty: &["quantity", "qty", "units"],
        f_status: &["status", "order_status", "state"],
        status_values: &["completed", "cancelled", "returned"],
        f_month: &["order_month", "month", "period"],
        a_noun: "customer",
        b_noun: "product",
        f_noun: "order",
        qty_noun: "units",
        amount_noun: "revenue (quantity times unit price)",
        seg_noun: "segment",
        cat_noun: "category",
        city_noun: "city",
    },
    Domain {
        title: "a consulting firm's time tracking",
        a_table: &["employees", "staff", "consultants"],
        a_city: &["office", "base_office", "site"],
        a_seg: &["level", "grade", "band"],
        seg_values: &["junior", "associate", "senior", "principal"],
        b_table: &["projects", "engagements", "initiatives"],
        b_cat: &["practice", "department", "division"],
        cat_values: &[
            "analytics",
            "design",
            "cloud",
            "security",
            "strategy",
            "operations",
            "finance",
            "legal",
        ],
        b_price: &["hourly_rate", "bill_rate", "rate"],
        f_table: &["timesheets", "time_entries", "worklogs"],
        f_qty: &["hours", "hours_logged", "duration_h"],
        f_status: &["status", "approval", "review_state"],
        status_values: &["approved", "rejected", "pending"],
        f_month: &["work_month", "month", "period"],
        a_noun: "employee",
        b_noun: "project",
        f_noun: "timesheet entry",
        qty_noun: "hours",
        amount_noun: "billed amount (hours times hourly rate)",
        seg_noun: "level",
        cat_noun: "practice",
        city_noun: "office",
    },
    Domain {
        title: "a chain of stores",
        a_table: &["stores", "shops", "outlets"],
        a_city: &["city", "town", "market"],
        a_seg: &["format", "store_format", "kind"],
        seg_values: &["mall", "street", "airport", "warehouse"],
        b_table: &["items", "skus", "articles"],
        b_cat: &["department", "aisle", "dept"],
        cat_values: &[
            "grocery",
            "electronics",
            "apparel",
            "home",
            "beauty",
            "sports",
            "garden",
            "pets",
        ],
        b_price: &["price", "retail_price", "shelf_price"],
        f_table: &["sales", "sale_lines", "receipts"],
        f_qty: &["units", "quantity", "qty_sold"],
        f_status: &["status", "payment_status", "txn_state"],
        status_values: &["paid", "refunded", "voided"],
        f_month: &["sale_month", "month", "period"],
        a_noun: "store",
        b_noun: "item",
        f_noun: "sale line",
        qty_noun: "units",
        amount_noun: "sales amount (units times price)",
        seg_noun: "format",
        cat_noun: "department",
        city_noun: "city",
    },
];

pub(super) const CITIES: &[&str] = &[
    "Arlen",
    "Brisby",
    "Caldera",
    "Dunmore",
    "Elsworth",
    "Fairhaven",
    "Glenrock",
    "Harrow",
    "Ivydale",
    "Jasper Bay",
    "Kestrel",
    "Lowmarsh",
    "Marlow",
    "Northgate",
    "Oakridge",
    "Pemberton",
    "Quarry Hill",
    "Redwater",
    "Stanmore",
    "Thistlewood",
    "Upton",
    "Valewick",
    "Westbrook",
    "Yarrow",
];

pub(super) const COUNTRIES: &[&str] = &["Norland", "Sudmark", "Estavia", "Westria"];

pub(super) const FIRST: &[&str] = &[
    "Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kira",
    "Luis", "Mira", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor",
    "Wren", "Yusuf", "Zoe",
];

pub(super) const LAST: &[&str] = &[
    "Abbott",
    "Baker",
    "Castro",
    "Dalton",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ibsen",
    "Jensen",
    "Kovacs",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Park",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
];

pub(super) const ADJ: &[&str] = &[
    "Amber", "Bold", "Crisp", "Deft", "Eager", "Firm", "Grand", "Hardy", "Ideal", "Jolly", "Keen",
    "Lucid", "Mellow", "Noble", "Opal", "Prime", "Quiet", "Rapid", "Solid", "True", "Urban",
    "Vivid",
];

pub(super) const NOUN: &[&str] = &[
    "Anchor", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris",
    "Juniper", "Kite", "Lantern", "Meadow", "Nova", "Orbit", "Pine", "Quartz", "Ridge", "Summit",
    "Tide",
];

/// The resolved schema of one instance.
pub(super) struct Schema {
    pub(super) dom: &'static Domain,
    pub(super) a: &'static str,
    pub(super) a_city: String,
    pub(super) a_seg: &'static str,
    pub(super) b: &'static str,
    pub(super) b_cat: &'static str,
    pub(super) b_price: &'static str,
    pub(super) f: &'static str,
    pub(super) f_a: String,
    pub(super) f_b: String,
    pub(super) f_qty: &'static str,
    pub(super) f_status: &'static str,
    pub(super) f_month: &'static str,
    /// The normalised city table, when cities are not inlined into `a`.
    pub(super) c: Option<&'static str>,
    pub(super) cities: Vec<&'static str>,
    pub(super) segs: Vec<&'static str>,
    pub(super) cats: Vec<&'static str>,
    pub(super) statuses: Vec<&'static str>,
    pub(super) year: u32,
}

impl Schema {
    /// `JOIN` clause for the city table (empty when inlined) and the city expression.
    pub(super) fn city(&self) -> (String, String) {
        match self.c {
            Some(c) => (format!(" JOIN {c} c ON c.id = a.{}", self.a_city), "c.name".into()),
            None => (String::new(), format!("a.{}", self.a_city)),
        }
    }
    pub(super) fn month(&self, m: u32) -> String {
        format!("{}-{:02}", self.year, m)
    }
    /// `f JOIN a JOIN b [JOIN c]`.
    pub(super) fn fab(&self) -> String {
        let (cj, _) = self.city();
        format!(
            "{f} f JOIN {a} a ON a.id = f.{fa} JOIN {b} b ON b.id = f.{fb}{cj}",
            f = self.f,
            a = self.a,
            b = self.b,
            fa = self.f_a,
            fb = self.f_b
        )
    }
}

/// One distractor table: name and `(column, type)` list; rows generated from the types.
pub(super) const DISTRACTORS: &[(&str, &[(&str, &str)])] = &[
    ("suppliers", &[("name", "TEXT"), ("country", "TEXT"), ("rating", "REAL")]),
    ("audit_log", &[("actor", "TEXT"), ("action", "TEXT"), ("logged_month", "TEXT")]),
    ("promotions", &[("code", "TEXT"), ("discount_pct", "INTEGER"), ("active", "INTEGER")]),
    ("budgets", &[("owner", "TEXT"), ("amount", "REAL"), ("fiscal_year", "INTEGER")]),
    ("tickets", &[("subject", "TEXT"), ("priority", "TEXT"), ("opened_month", "TEXT")]),
];
