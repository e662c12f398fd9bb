//! The logistics family's network: places, carriers, routes and shipments generated from the
//! instance seed ([`Net`]), the mutable bookings/suspensions/capacities of an episode
//! ([`Dyn`]), and the task rules and kinds.

use super::*;

pub(super) const PLACES: &[&str] = &[
    "Arlen",
    "Brisby",
    "Caldera",
    "Dunmore",
    "Elsworth",
    "Fairhaven",
    "Glenrock",
    "Harrow",
    "Ivydale",
    "Kestrel",
    "Lowmarsh",
    "Marlow",
    "Northgate",
    "Oakridge",
    "Pemberton",
    "Redwater",
    "Stanmore",
    "Upton",
    "Valewick",
    "Westbrook",
];

pub(super) const CARRIER_NAMES: &[&str] = &[
    "Swift Freight",
    "Atlas Haulage",
    "Bluewave Cargo",
    "Keystone Transport",
    "Northline Express",
    "Orbit Logistics",
    "Pioneer Carriers",
    "Redline Trucking",
    "Summit Movers",
    "Vector Shipping",
];

pub(super) struct Carrier {
    pub(super) id: String,
    pub(super) name: &'static str,
    pub(super) hazmat: bool,
    pub(super) max_kg: i64,
}

pub(super) struct Route {
    pub(super) id: String,
    pub(super) lane: usize,
    pub(super) carrier: usize,
    pub(super) days: i64,
    pub(super) fee: i64,
    pub(super) per_kg: i64,
    pub(super) capacity: i64,
}

pub(super) struct Shipment {
    pub(super) id: String,
    pub(super) lane: usize,
    pub(super) kg: i64,
    pub(super) hazmat: bool,
    pub(super) deadline: i64,
}

pub(super) struct Net {
    pub(super) lanes: Vec<(&'static str, &'static str)>,
    pub(super) carriers: Vec<Carrier>,
    pub(super) routes: Vec<Route>,
    pub(super) shipments: Vec<Shipment>,
    /// Unbooked shipment indices per lane, and booked ones (with their base route).
    pub(super) unbooked: Vec<Vec<usize>>,
    pub(super) booked: Vec<(usize, usize)>,
}

pub(super) fn wh(place: &str) -> String {
    format!("WH-{}", place[..3].to_uppercase())
}

impl Net {
    pub(super) fn generate(r: &mut impl Rng) -> Net {
        let mut places = PLACES.to_vec();
        places.shuffle(r);
        let nw = r.random_range(3..=5);
        let warehouses: Vec<&str> = places[..nw].to_vec();
        let dests: Vec<&str> = places[nw..nw + r.random_range(5..=8)].to_vec();
        let mut lanes = Vec::new();
        for w in &warehouses {
            for d in &dests {
                lanes.push((*w, *d));
            }
        }
        lanes.shuffle(r);
        lanes.truncate(r.random_range(9..=13));
        let mut names = CARRIER_NAMES.to_vec();
        names.shuffle(r);
        let nc = r.random_range(5..=7);
        let carriers: Vec<Carrier> = (0..nc)
            .map(|i| Carrier {
                id: format!("CR-{}", 10 + i * 3 + r.random_range(0..3)),
                name: names[i],
                hazmat: i == 0 || r.random_bool(0.45),
                max_kg: if i == 0 {
                    2000
                } else {
                    [400, 600, 800, 1200, 2000][r.random_range(0..5)]
                },
            })
            .collect();
        let mut routes = Vec::new();
        let mut rid = r.random_range(100..500);
        for lane in 0..lanes.len() {
            let n = r.random_range(3..=6usize).min(nc);
            let mut cs: Vec<usize> = (0..nc).collect();
            cs.shuffle(r);
            // The first carrier is hazmat-certified with a large limit on some lane route, so
            // every shipment has at least one physically possible route.
            if !cs[..n].contains(&0) {
                cs[0] = 0;
            }
            for &c in cs.iter().take(n) {
                let days = r.random_range(1..=8);
                // Faster routes tend to cost more.
                let fee = r.random_range(1500..=9000) + (9 - days) * r.random_range(300..=900);
                let per_kg = r.random_range(8..=40) + (9 - days) * r.random_range(1..=6);
                routes.push(Route {
                    id: format!("R-{rid}"),
                    lane,
                    carrier: c,
                    days,
                    fee,
                    per_kg,
                    capacity: r.random_range(15..=60) * 100,
                });
                rid += r.random_range(1..=9);
            }
        }
        let mut shipments = Vec::new();
        let mut unbooked = vec![Vec::new(); lanes.len()];
        let mut booked = Vec::new();
        let mut sid = r.random_range(1000..5000);
        let mut load: BTreeMap<usize, i64> = BTreeMap::new();
        for (lane, ub) in unbooked.iter_mut().enumerate() {
            let lane_routes: Vec<usize> =
                (0..routes.len()).filter(|&i| routes[i].lane == lane).collect();
            for k in 0..8 {
                let hazmat = r.random_bool(0.25);
                let kg = r.random_range(2..=90) * 10;
                // Deadlines leave room for at least one physically possible route (carrier 0
                // serves every lane) and usually several.
                let min_days = lane_routes
                    .iter()
                    .filter(|&&i| {
                        let c = &carriers[routes[i].carrier];
                        (!hazmat || c.hazmat) && c.max_kg >= kg
                    })
                    .map(|&i| routes[i].days)
                    .min()
                    .unwrap_or(1);
                let deadline = min_days + r.random_range(1..=4);
                let idx = shipments.len();
                shipments.push(Shipment { id: format!("SH-{sid}"), lane, kg, hazmat, deadline });
                sid += r.random_range(1..=7);
                if k < 5 {
                    ub.push(idx);
                } else {
                    // Booked on some valid route (base state).
                    let ok: Vec<usize> = lane_routes
                        .iter()
                        .copied()
                        .filter(|&ri| {
                            let c = &carriers[routes[ri].carrier];
                            routes[ri].days <= deadline
                                && (!hazmat || c.hazmat)
                                && c.max_kg >= kg
                                && load.get(&ri).copied().unwrap_or(0) + kg <= routes[ri].capacity
                        })
                        .collect();
                    match ok.get(r.random_range(0..ok.len().max(1))) {
                        Some(&ri) => {
                            *load.entry(ri).or_default() += kg;
                            booked.push((idx, ri));
                        }
                        None => ub.push(idx),
                    }
                }
            }
        }
        Net { lanes, carriers, routes, shipments, unbooked, booked }
    }

    pub(super) fn route_by_id(&self, id: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.id == id)
    }
    pub(super) fn shipment_by_id(&self, id: &str) -> Option<usize> {
        self.shipments.iter().position(|s| s.id == id)
    }
    pub(super) fn cost(&self, s: usize, r: usize) -> i64 {
        self.routes[r].fee + self.routes[r].per_kg * self.shipments[s].kg
    }
}

/// The dynamic part, parsed from the state JSON.
pub(super) struct Dyn {
    pub(super) bookings: BTreeMap<String, String>,
    pub(super) suspended: BTreeSet<String>,
    pub(super) capacity: BTreeMap<String, i64>,
}

impl Dyn {
    pub(super) fn from_state(v: &Value) -> Dyn {
        let bookings = v
            .get("bookings")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
            })
            .unwrap_or_default();
        let suspended = v
            .get("suspended_routes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let capacity = v
            .get("capacity_overrides_kg")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_i64()?))).collect())
            .unwrap_or_default();
        Dyn { bookings, suspended, capacity }
    }
    pub(super) fn to_value(&self) -> Value {
        json!({
            "bookings": self.bookings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
            "suspended_routes": self.suspended.iter().collect::<Vec<_>>(),
            "capacity_overrides_kg": self.capacity.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
        })
    }
    pub(super) fn capacity(&self, net: &Net, r: usize) -> i64 {
        self.capacity.get(&net.routes[r].id).copied().unwrap_or(net.routes[r].capacity)
    }
    pub(super) fn load(&self, net: &Net, r: usize) -> i64 {
        let rid = &net.routes[r].id;
        self.bookings
            .iter()
            .filter(|(_, v)| *v == rid)
            .filter_map(|(s, _)| net.shipment_by_id(s))
            .map(|s| net.shipments[s].kg)
            .sum()
    }
}

/// What the task asks beyond the shipments' own data.
#[derive(Clone, Debug, Default)]
pub(super) struct Rules {
    pub(super) banned_carrier: Option<usize>,
}

#[derive(Clone, Debug)]
pub(super) enum Kind {
    /// Book unbooked shipments (1 independent, 2 on different lanes, or 2-3 on one lane).
    Book(Vec<usize>),
    /// A route is suspended: rebook its shipments (plus optionally book one more on the lane).
    Reroute { route: usize, extra: Option<usize> },
}
