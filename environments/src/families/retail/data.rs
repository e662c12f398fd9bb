//! The retail family's data: the product catalogue, name pools, users with their orders, and
//! building an instance (and its policy text) from its seed.

use super::*;

pub(super) const PRODUCTS: &[(&str, &str, &[&str])] = &[
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

pub(super) const NAMES: &[&str] =
    &["mia", "noah", "ava", "liam", "zoe", "omar", "lena", "raj", "sofia", "ivan", "yuki", "ella"];

pub(super) const LASTS: &[&str] =
    &["garcia", "kim", "patel", "smith", "rossi", "novak", "silva", "chen", "brown", "khan"];

pub(super) struct Variant {
    pub(super) item_id: String,
    pub(super) option: &'static str,
    pub(super) price: i64,
    pub(super) available: bool,
}

pub(super) struct Product {
    pub(super) id: String,
    pub(super) name: &'static str,
    pub(super) option_name: &'static str,
    pub(super) variants: Vec<Variant>,
}

pub(super) struct User {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) email: String,
    pub(super) zip: String,
    pub(super) card: String,
    pub(super) gift: String,
    pub(super) orders: Vec<Value>,
}

impl Shop {
    pub(super) fn build(seed: u64) -> Result<Shop> {
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
                email: format!("{first}.{last}{ui}@example.com"),
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

    pub(super) fn date(&self, day: i64) -> String {
        let months = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut d = day.clamp(0, 364);
        let mut m = 0;
        while d >= months[m] {
            d -= months[m];
            m += 1;
        }
        format!("2025-{:02}-{:02}", m + 1, d + 1)
    }

    pub(super) fn policy(&self) -> String {
        format!(
            "You are the customer-service agent of {}. Today is {}.\nPolicy:\n1. Authenticate the user by email (find_user_id_by_email) before anything else.\n2. Only pending orders can be cancelled or have their address changed.\n3. Only delivered orders can be returned or exchanged, and only within {} days of delivery. Outside that window, do not return or exchange: transfer to a human agent with reason return_window_expired.\n4. Refunds go to the original payment method unless the user asks for their gift card.\n5. Exchanges must be to an available variant of the same product.\n6. Perform only the actions the user asked for.",
            self.store,
            self.date(self.today_day),
            self.window
        )
    }

    pub(super) fn user_of(&self, state: &State) -> Option<&User> {
        let id = state.0.get("user_id")?.as_str()?;
        self.users.iter().find(|u| u.id == id)
    }
}

pub(super) fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}
