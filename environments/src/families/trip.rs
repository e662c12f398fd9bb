//! `trip`: multi-day trip planning over cities, hotels, restaurants and attractions (the worked
//! example of DeepSeek-V3.2's general-agent environments). The traveler fixes the city of each
//! day and a budget; higher difficulties add conditional budget rules (an expensive hotel
//! tightens the meal and ticket rules of that day), a minimum hotel rating, weather-dependent
//! indoor attractions and inter-city transport counted in the budget. The verifier checks the
//! submitted itinerary against every constraint, computed from the instance data: many plans
//! can pass, none that breaks a rule.

use std::collections::{HashMap, HashSet};

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::common::{Base, TaskParts, builtin_family, turn};
use crate::error::Result;
use crate::framework::{Check, Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{arg_str, call, mix, money, permute, rng};

const NAME: &str = "trip";
const VERSION: u32 = 2;

/// The trip-planning family.
pub struct Trip;

builtin_family!(Trip, NAME, VERSION, TripInstance::build);

const CITIES: &[&str] = &[
    "Aldmoor",
    "Brightwater",
    "Calderon",
    "Dunmere",
    "Eastwick",
    "Falkreach",
    "Glenhaven",
    "Harrowgate",
    "Ironvale",
    "Juniper Bay",
    "Kingsbridge",
    "Larkspur",
    "Millbrook",
    "Northcliff",
    "Oakheart",
    "Pinecrest",
    "Queensport",
    "Ravenholm",
    "Silverton",
    "Thornbury",
    "Umberfield",
    "Valewood",
    "Westmarch",
    "Yarrow",
];
const HOTEL_WORDS: &[&str] = &[
    "Grand",
    "Royal",
    "Harbor",
    "Garden",
    "Plaza",
    "Station",
    "Riverside",
    "Old Town",
    "Skyline",
    "Cozy",
];
const HOTEL_KINDS: &[&str] = &["Hotel", "Inn", "Suites", "Lodge", "Hostel", "Residence"];
const CUISINES: &[&str] =
    &["Italian", "Japanese", "local", "Indian", "French", "vegetarian", "seafood", "Mexican"];
const REST_WORDS: &[&str] =
    &["Bistro", "Kitchen", "Table", "House", "Corner", "Garden", "Grill", "Canteen"];
const ATTR: &[(&str, bool)] = &[
    ("Museum of History", true),
    ("Art Gallery", true),
    ("Aquarium", true),
    ("Science Center", true),
    ("Cathedral", true),
    ("Botanical Garden", false),
    ("Castle Ruins", false),
    ("Harbor Cruise", false),
    ("Zoo", false),
    ("Old Market", false),
    ("Lighthouse", false),
    ("Opera House", true),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum VKind {
    Hotel,
    Restaurant,
    Attraction,
}

struct Venue {
    id: String,
    name: String,
    kind: VKind,
    city: usize,
    price: i64,
    rating: f64,
    indoor: bool,
    cuisine: &'static str,
}

struct TripInstance {
    base: Base,
    cities: Vec<String>,
    venues: Vec<Venue>,
    by_id: HashMap<String, usize>,
    agency: String,
}

impl TripInstance {
    fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[0x7819, seed]);
        let mut allowed =
            vec!["list_hotels", "list_restaurants", "list_attractions", "submit_result"];
        for t in
            ["list_cities", "get_venue_city", "get_venue_details", "get_transport", "get_weather"]
        {
            if r.random_bool(0.8) {
                allowed.push(t);
            }
        }
        for t in ["get_weather", "get_transport"] {
            if !allowed.contains(&t) {
                allowed.push(t);
            }
        }
        allowed.shuffle(&mut r);
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let mut names: Vec<&str> = CITIES.to_vec();
        names.shuffle(&mut r);
        let cities: Vec<String> =
            names[..r.random_range(5..=8)].iter().map(|s| (*s).to_owned()).collect();
        let mut venues = Vec::new();
        let mut n = r.random_range(10..90);
        for (ci, city) in cities.iter().enumerate() {
            let tier = f64::from(r.random_range(70..=140)) / 100.0;
            let mut push = |r: &mut rand_chacha::ChaCha8Rng,
                            kind: VKind,
                            name: String,
                            price: i64,
                            indoor: bool,
                            cuisine: &'static str| {
                n += r.random_range(1..7);
                let prefix = match kind {
                    VKind::Hotel => "H",
                    VKind::Restaurant => "R",
                    VKind::Attraction => "A",
                };
                let rating = f64::from(r.random_range(28..=50)) / 10.0;
                venues.push(Venue {
                    id: format!("{prefix}-{n}"),
                    name,
                    kind,
                    city: ci,
                    price,
                    rating,
                    indoor,
                    cuisine,
                });
            };
            for _ in 0..r.random_range(4..=7) {
                let name = format!(
                    "{} {} {}",
                    city,
                    HOTEL_WORDS.choose(&mut r).unwrap_or(&"Grand"),
                    HOTEL_KINDS.choose(&mut r).unwrap_or(&"Hotel")
                );
                let price = ((f64::from(r.random_range(60..=900)) * tier) as i64) * 100;
                push(&mut r, VKind::Hotel, name, price, true, "");
            }
            for _ in 0..r.random_range(5..=8) {
                let cuisine = *CUISINES.choose(&mut r).unwrap_or(&"local");
                let name = format!(
                    "{} {}",
                    ["The", "Little", "Blue", "Golden", "Old", "Nonna's", "Sakura", "Saffron"]
                        .choose(&mut r)
                        .unwrap_or(&"The"),
                    REST_WORDS.choose(&mut r).unwrap_or(&"Kitchen")
                );
                let price = ((f64::from(r.random_range(12..=160)) * tier) as i64) * 100;
                push(&mut r, VKind::Restaurant, name, price, true, cuisine);
            }
            let mut attrs: Vec<(&str, bool)> = ATTR.to_vec();
            attrs.shuffle(&mut r);
            for (a, indoor) in attrs.iter().take(r.random_range(4..=6)) {
                let price = ((f64::from(r.random_range(0..=150)) * tier) as i64) * 100;
                push(&mut r, VKind::Attraction, format!("{city} {a}"), price, *indoor, "");
            }
        }
        // Guarantee at least one indoor attraction per city.
        for ci in 0..cities.len() {
            if !venues.iter().any(|v| v.city == ci && v.kind == VKind::Attraction && v.indoor)
                && let Some(v) =
                    venues.iter_mut().find(|v| v.city == ci && v.kind == VKind::Attraction)
            {
                v.indoor = true;
            }
        }
        let by_id = venues.iter().enumerate().map(|(i, v)| (v.id.clone(), i)).collect();
        let agency = ["Wayfarer Travel", "Compass Trips", "Nomad & Co", "Bluebird Journeys"]
            .choose(&mut r)
            .copied()
            .unwrap_or("Travel")
            .to_owned();
        Ok(TripInstance { base, cities, venues, by_id, agency })
    }

    fn city_index(&self, name: &str) -> Option<usize> {
        let n = name.trim().to_lowercase();
        self.cities.iter().position(|c| c.to_lowercase() == n)
    }

    fn weather(&self, city: usize, date: &str) -> (&'static str, i64) {
        let h = mix(&[self.base.instance_seed, city as u64, crate::util::name_hash(date)]);
        let cond = match h % 10 {
            0..=3 => "sunny",
            4..=6 => "cloudy",
            _ => "rainy",
        };
        (cond, 8 + (h >> 8) as i64 % 20)
    }

    fn transport(&self, a: usize, b: usize) -> Vec<(String, i64, i64)> {
        let h = mix(&[self.base.instance_seed, a.min(b) as u64, a.max(b) as u64]);
        if a == b {
            return vec![("metro".into(), 25, 300), ("taxi".into(), 15, 1800 + (h % 1500) as i64)];
        }
        let base_min = 60 + (h % 300) as i64;
        vec![
            ("train".into(), base_min, 2000 + ((h >> 10) % 9000) as i64),
            ("bus".into(), base_min * 2, 1200 + ((h >> 20) % 4000) as i64),
            ("flight".into(), 50 + (h >> 30) as i64 % 40, 9000 + ((h >> 40) % 20000) as i64),
        ]
    }

    fn cheapest_transport(&self, a: usize, b: usize) -> i64 {
        self.transport(a, b).iter().map(|t| t.2).min().unwrap_or(0)
    }

    fn venue_json(&self, v: &Venue) -> Value {
        match v.kind {
            VKind::Hotel => {
                json!({"id": v.id, "name": v.name, "price_per_night": money(v.price), "rating": v.rating})
            }
            VKind::Restaurant => {
                json!({"id": v.id, "name": v.name, "cuisine": v.cuisine, "avg_price_per_person": money(v.price), "rating": v.rating})
            }
            VKind::Attraction => {
                json!({"id": v.id, "name": v.name, "ticket_price": money(v.price), "rating": v.rating, "indoor": v.indoor})
            }
        }
    }

    fn list(&self, city: usize, kind: VKind) -> Vec<&Venue> {
        self.venues.iter().filter(|v| v.city == city && v.kind == kind).collect()
    }
}

/// What a task asks for; stored in `hidden` and re-read by the verifier.
struct Plan {
    days: Vec<usize>,
    dates: Vec<String>,
    budget: i64,
    /// (hotel price threshold, meals cap, min meal rating, ticket cap) applied on day 2.
    expensive_rule: Option<(i64, i64, f64, i64)>,
    min_hotel_rating: Option<f64>,
    weather_rule: bool,
    transport_in_budget: bool,
}

fn plan_json(p: &Plan) -> Value {
    json!({
        "days": p.days, "dates": p.dates, "budget": p.budget,
        "expensive_rule": p.expensive_rule.map(|(a, b, c, d)| json!([a, b, c, d])),
        "min_hotel_rating": p.min_hotel_rating, "weather_rule": p.weather_rule,
        "transport_in_budget": p.transport_in_budget,
    })
}

fn plan_from(v: &Value) -> Option<Plan> {
    let days = v
        .get("days")?
        .as_array()?
        .iter()
        .map(|x| x.as_u64().map(|x| x as usize))
        .collect::<Option<Vec<_>>>()?;
    let dates = v
        .get("dates")?
        .as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    let rule = v.get("expensive_rule").and_then(Value::as_array).and_then(|a| {
        Some((a.first()?.as_i64()?, a.get(1)?.as_i64()?, a.get(2)?.as_f64()?, a.get(3)?.as_i64()?))
    });
    Some(Plan {
        days,
        dates,
        budget: v.get("budget")?.as_i64()?,
        expensive_rule: rule,
        min_hotel_rating: v.get("min_hotel_rating").and_then(Value::as_f64),
        weather_rule: v.get("weather_rule")?.as_bool()?,
        transport_in_budget: v.get("transport_in_budget")?.as_bool()?,
    })
}

impl TripInstance {
    /// Check an itinerary (the submitted JSON) against the plan; one check per rule.
    fn judge(&self, p: &Plan, days: &Value) -> Vec<Check> {
        let mut checks = Vec::new();
        let Some(items) = days.as_array() else {
            return vec![Check::new("submitted", false, "no itinerary was submitted")];
        };
        checks.push(Check::eq("day_count", &items.len(), &p.days.len()));
        if items.len() != p.days.len() {
            return checks;
        }
        let mut seen = HashSet::new();
        let mut total = 0i64;
        let mut bad = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let city = p.days[i];
            let day_no = item.get("day").and_then(Value::as_i64);
            if day_no != Some(i as i64 + 1) {
                bad.push(format!("entry {i} has day {day_no:?}, want {}", i + 1));
            }
            if item.get("city").and_then(Value::as_str).and_then(|c| self.city_index(c))
                != Some(city)
            {
                bad.push(format!("day {} must be spent in {}", i + 1, self.cities[city]));
            }
            let mut get = |key: &str, kind: VKind| -> Option<&Venue> {
                let id = item.get(key).and_then(Value::as_str).unwrap_or_default().trim();
                let v = self.by_id.get(id).map(|&x| &self.venues[x]);
                match v {
                    None => bad.push(format!("day {} {key}: unknown id {id:?}", i + 1)),
                    Some(v) if v.kind != kind => {
                        bad.push(format!("day {} {key}: {id} is a {:?}", i + 1, v.kind));
                    }
                    Some(v) if v.city != city => bad.push(format!(
                        "day {} {key}: {id} is in {}, not {}",
                        i + 1,
                        self.cities[v.city],
                        self.cities[city]
                    )),
                    Some(v) => {
                        if !seen.insert(v.id.clone()) {
                            bad.push(format!("{id} is used twice"));
                        }
                        return Some(v);
                    }
                }
                None
            };
            let hotel = get("hotel", VKind::Hotel);
            let attraction = get("attraction", VKind::Attraction);
            let lunch = get("lunch", VKind::Restaurant);
            let dinner = get("dinner", VKind::Restaurant);
            let (Some(h), Some(a), Some(l), Some(d)) = (hotel, attraction, lunch, dinner) else {
                continue;
            };
            total += h.price + a.price + l.price + d.price;
            if let Some(min) = p.min_hotel_rating
                && h.rating < min
            {
                bad.push(format!("day {} hotel {} rates {} < {min}", i + 1, h.id, h.rating));
            }
            if let Some((thr, meals, rating, ticket)) = p.expensive_rule
                && i == 1
                && h.price >= thr
                && (l.price + d.price >= meals
                    || l.rating < rating
                    || d.rating < rating
                    || a.price >= ticket)
            {
                bad.push(format!(
                    "day 2 hotel costs {} >= {}: meals, ratings or ticket break the rule",
                    money(h.price),
                    money(thr)
                ));
            }
            if p.weather_rule && self.weather(city, &p.dates[i]).0 == "rainy" && !a.indoor {
                bad.push(format!(
                    "day {} is rainy in {} but {} is outdoors",
                    i + 1,
                    self.cities[city],
                    a.id
                ));
            }
        }
        if p.transport_in_budget {
            total += p.days.windows(2).map(|w| self.cheapest_transport(w[0], w[1])).sum::<i64>();
        }
        checks.push(Check::new(
            "venues_and_rules",
            bad.is_empty(),
            if bad.is_empty() {
                "all venues valid, no rule broken".to_owned()
            } else {
                bad.join("; ")
            },
        ));
        checks.push(Check::new(
            "budget",
            total <= p.budget,
            format!("cost {} vs budget {}", money(total), money(p.budget)),
        ));
        checks
    }

    fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut last = None;
        for attempt in 0..12u64 {
            match self.generate_attempt(task_seed, attempt) {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.base.gen_error("no feasible trip")))
    }

    fn generate_attempt(&self, task_seed: u64, attempt: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0x7819, self.base.instance_seed, task_seed, attempt]);
        let difficulty = (task_seed % 5) as u8 + 1;
        let n_days = [1, 2, 3, 3, 3][difficulty as usize - 1];
        let mut order: Vec<usize> = (0..self.cities.len()).collect();
        order.shuffle(&mut r);
        let mut days: Vec<usize> = Vec::new();
        for i in 0..n_days {
            // Sometimes stay two days in one city (the "no venue repeated" rule then bites).
            if i > 0 && r.random_bool(0.3) {
                days.push(days[i - 1]);
            } else {
                days.push(order[i]);
            }
        }
        // Every task seed of an instance gets its own start date (8 months x 25 days = the 200
        // task seeds), so distinct seeds are distinct trips.
        let x = permute(task_seed % 200, 200, mix(&[0x7819, self.base.instance_seed])) as usize;
        let (month, start) = (3 + x / 25, 1 + x % 25);
        let dates: Vec<String> =
            (0..n_days).map(|i| format!("2025-{month:02}-{:02}", start + i)).collect();
        let mut plan = Plan {
            days: days.clone(),
            dates: dates.clone(),
            budget: 0,
            expensive_rule: None,
            min_hotel_rating: (difficulty >= 4).then(|| [3.5, 3.8, 4.0][r.random_range(0..3)]),
            weather_rule: difficulty >= 5 && self.base.has("get_weather"),
            transport_in_budget: difficulty >= 5
                && self.base.has("get_transport")
                && days.windows(2).any(|w| w[0] != w[1]),
        };
        // A rating rule must leave enough distinct hotels in every city of the itinerary;
        // relax it step by step where the instance's data cannot satisfy it.
        while let Some(m) = plan.min_hotel_rating {
            let feasible = days.iter().all(|&c| {
                let need = days.iter().filter(|&&d| d == c).count();
                self.list(c, VKind::Hotel).iter().filter(|h| h.rating >= m).count() >= need
            });
            if feasible {
                break;
            }
            plan.min_hotel_rating = [3.5, 3.0].into_iter().find(|&x| x < m);
        }
        if difficulty >= 3 {
            let city = days[1];
            let mut prices: Vec<i64> =
                self.list(city, VKind::Hotel).iter().map(|h| h.price).collect();
            prices.sort_unstable();
            let thr = prices[prices.len() / 2].max(10_000);
            let mut good: Vec<i64> = self
                .list(city, VKind::Restaurant)
                .iter()
                .filter(|x| x.rating >= 4.0)
                .map(|x| x.price)
                .collect();
            good.sort_unstable();
            let rating = if good.len() >= 2 { 4.0 } else { 3.0 };
            let meals = good.iter().take(2).sum::<i64>() + r.random_range(1..=8) * 500;
            plan.expensive_rule = Some((thr, meals, rating, r.random_range(4..=12) * 1000));
        }
        // Reference: cheapest valid choice per day.
        let mut used = HashSet::new();
        let mut chosen = Vec::new();
        let mut cost = 0i64;
        for (i, &city) in days.iter().enumerate() {
            let mut hotels = self.list(city, VKind::Hotel);
            hotels.retain(|h| {
                !used.contains(&h.id) && plan.min_hotel_rating.is_none_or(|m| h.rating >= m)
            });
            hotels.sort_by_key(|h| (h.price, h.id.clone()));
            let Some(h) = hotels.first() else {
                return Err(self.base.gen_error("no hotel satisfies the rating rule"));
            };
            let rainy = plan.weather_rule && self.weather(city, &dates[i]).0 == "rainy";
            let mut attrs = self.list(city, VKind::Attraction);
            attrs.retain(|a| !used.contains(&a.id) && (!rainy || a.indoor));
            attrs.sort_by_key(|a| (a.price, a.id.clone()));
            let mut rests = self.list(city, VKind::Restaurant);
            rests.retain(|x| !used.contains(&x.id));
            rests.sort_by_key(|x| (x.price, x.id.clone()));
            let strict = plan.expensive_rule.filter(|&(thr, ..)| i == 1 && h.price >= thr);
            if let Some((_, _, rating, ticket)) = strict {
                rests.retain(|x| x.rating >= rating);
                attrs.retain(|a| a.price < ticket);
            }
            let (Some(a), Some(l), Some(d)) = (attrs.first(), rests.first(), rests.get(1)) else {
                return Err(self.base.gen_error("no valid day plan"));
            };
            if let Some((_, meals, ..)) = strict
                && l.price + d.price >= meals
            {
                return Err(self.base.gen_error("meal cap infeasible"));
            }
            for v in [h, a, l, d] {
                used.insert(v.id.clone());
                cost += v.price;
            }
            chosen.push(json!({"day": i + 1, "city": self.cities[city], "hotel": h.id, "attraction": a.id, "lunch": l.id, "dinner": d.id}));
        }
        if plan.transport_in_budget {
            cost += days.windows(2).map(|w| self.cheapest_transport(w[0], w[1])).sum::<i64>();
        }
        let slack = [30, 20, 12, 8, 5][difficulty as usize - 1];
        plan.budget = (cost * (100 + slack) / 100 / 1000 + 1) * 1000;

        // Prompt.
        let route: Vec<String> = days
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("day {} ({}) in {}", i + 1, dates[i], self.cities[c]))
            .collect();
        let mut rules = vec![
            format!("Plan {n_days} day(s): {}.", route.join(", ")),
            "Each day needs a hotel for the night, one attraction, a lunch and a dinner restaurant, all in that day's city.".to_owned(),
            "No hotel, restaurant or attraction may be used twice in the whole trip.".to_owned(),
            format!("The total of hotel nights, attraction tickets and meal prices (one person) must not exceed {}.", money(plan.budget)),
        ];
        if let Some(m) = plan.min_hotel_rating {
            rules.push(format!("Every hotel must be rated at least {m:.1}."));
        }
        if let Some((thr, meals, rating, ticket)) = plan.expensive_rule {
            rules.push(format!("If the day-2 hotel costs {} or more, then on day 2 lunch and dinner together must cost less than {}, both restaurants must be rated at least {rating:.1} and the attraction ticket must cost less than {}.", money(thr), money(meals), money(ticket)));
        }
        if plan.weather_rule {
            rules.push(
                "On any day with a rainy forecast in that city, the attraction must be indoor."
                    .to_owned(),
            );
        }
        if plan.transport_in_budget {
            rules.push("Travel between different cities counts toward the budget at the price of the cheapest option.".to_owned());
        }
        let opener = [
            "Please plan my trip.",
            "I need an itinerary for a trip.",
            "Help me put together a trip, please.",
            "Could you organise my travel plans?",
        ][r.random_range(0..4)];
        let user =
            format!("{opener}\n- {}\nSubmit the itinerary with submit_result.", rules.join("\n- "));
        let mut distinct: Vec<usize> = days.clone();
        distinct.dedup();
        let mut reads = Vec::new();
        for &c in &distinct {
            for t in ["list_hotels", "list_restaurants", "list_attractions"] {
                reads.push(call(t, json!({"city": self.cities[c]})));
            }
        }
        let mut turns = vec![turn(
            "Look up hotels, restaurants and attractions of every city on the route in parallel.",
            reads,
        )];
        let mut extra = Vec::new();
        if plan.weather_rule {
            for (i, &c) in days.iter().enumerate() {
                extra.push(call("get_weather", json!({"city": self.cities[c], "date": dates[i]})));
            }
        }
        if plan.transport_in_budget {
            for w in days.windows(2).filter(|w| w[0] != w[1]) {
                extra.push(call(
                    "get_transport",
                    json!({"from_city": self.cities[w[0]], "to_city": self.cities[w[1]]}),
                ));
            }
        }
        if !extra.is_empty() {
            turns.push(turn("The weather and transport rules need forecasts and inter-city prices; fetch them in parallel.", extra));
        }
        turns.push(turn(format!("Pick the cheapest valid hotel, attraction and two restaurants per day, respecting every rule; total {} within {}.", money(cost), money(plan.budget)), vec![call("submit_result", json!({"days": chosen}))]));
        let system = format!(
            "You are the trip-planning assistant of {}. Use the tools to look up venues; ids come from the tool results. Prices are in USD. Submit the final itinerary with submit_result.",
            self.agency
        );
        let parts = TaskParts {
            difficulty,
            system_prompt: system,
            user_prompt: user,
            initial_state: json!({"submitted": null}),
            turns,
            final_answer: format!(
                "Here is your {n_days}-day itinerary; estimated cost {} within your budget of {}.",
                money(cost),
                money(plan.budget)
            ),
            hidden: json!({"plan": plan_json(&plan)}),
        };
        Ok(self.base.finish(task_seed, parts))
    }
}

impl Instance for TripInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        self.generate(task_seed)
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let city = |key: &str| -> std::result::Result<usize, ToolResult> {
            let c = arg_str(&args, key).unwrap_or_default();
            self.city_index(c).ok_or_else(|| ToolResult::error(format!("unknown city {c:?}")))
        };
        let venue = || -> std::result::Result<&Venue, ToolResult> {
            let id = arg_str(&args, "venue_id").unwrap_or_default().trim();
            self.by_id
                .get(id)
                .map(|&i| &self.venues[i])
                .ok_or_else(|| ToolResult::error(format!("unknown venue id {id:?}")))
        };
        let res = match name {
            "list_cities" => Ok(ToolResult::read(&json!({"cities": self.cities}))),
            "list_hotels" | "list_restaurants" | "list_attractions" => city("city").map(|c| {
                let kind = match name { "list_hotels" => VKind::Hotel, "list_restaurants" => VKind::Restaurant, _ => VKind::Attraction };
                let items: Vec<Value> = self.list(c, kind).iter().map(|v| self.venue_json(v)).collect();
                ToolResult::read(&json!({"city": self.cities[c], "results": items}))
            }),
            "get_venue_city" => venue().map(|v| ToolResult::read(&json!({"venue_id": v.id, "city": self.cities[v.city]}))),
            "get_venue_details" => venue().map(|v| {
                let mut j = self.venue_json(v);
                j["type"] = json!(format!("{:?}", v.kind).to_lowercase());
                j["city"] = json!(self.cities[v.city]);
                j["opening_hours"] = json!(if v.kind == VKind::Hotel { "24h" } else { "09:00-22:00" });
                ToolResult::read(&j)
            }),
            "get_transport" => city("from_city").and_then(|a| city("to_city").map(|b| (a, b))).map(|(a, b)| {
                let opts: Vec<Value> = self.transport(a, b).iter().map(|(m, d, p)| json!({"mode": m, "duration_min": d, "price": money(*p)})).collect();
                ToolResult::read(&json!({"from": self.cities[a], "to": self.cities[b], "options": opts}))
            }),
            "get_weather" => city("city").and_then(|c| {
                let date = arg_str(&args, "date").unwrap_or_default().trim();
                if !(date.len() == 10 && date.starts_with("2025-")) {
                    return Err(ToolResult::error(format!("date {date:?} is outside the forecast window (2025, YYYY-MM-DD)")));
                }
                let (cond, t) = self.weather(c, date);
                Ok(ToolResult::read(&json!({"city": self.cities[c], "date": date, "condition": cond, "temperature_c": t})))
            }),
            "submit_result" => {
                state.0["submitted"] = args.get("days").cloned().unwrap_or(Value::Null);
                Ok(ToolResult::write(&json!({"status": "itinerary received"})))
            }
            other => Err(ToolResult::error(format!("tool {other:?} is not implemented"))),
        };
        res.unwrap_or_else(|e| e)
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let Some(plan) = task.hidden.get("plan").and_then(plan_from) else {
            return Verdict::from_checks(vec![Check::new("task", false, "task has no plan")]);
        };
        let submitted = state.0.get("submitted").unwrap_or(&Value::Null);
        Verdict::from_checks(self.judge(&plan, submitted))
    }
}
