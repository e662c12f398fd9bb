//! The search family's world: name pools, the generated entities (cities, people, companies,
//! products) and their relations, and the documents written about them.

use super::*;

pub(super) const SYL: &[&str] = &[
    "nor", "vex", "tal", "ira", "bren", "ko", "mar", "lin", "dor", "sa", "vel", "mo", "ra", "kas",
    "trel", "an", "qui", "zen", "pho", "lum", "ser", "ta", "gal", "ven", "ori", "bel", "cas",
    "dru",
];

pub(super) const COMPANY_SUFFIX: &[&str] = &[
    "Labs",
    "Systems",
    "Dynamics",
    "Holdings",
    "Works",
    "Foods",
    "Energy",
    "Robotics",
    "Logistics",
];

pub(super) const INDUSTRY: &[&str] = &[
    "software",
    "food processing",
    "renewable energy",
    "robotics",
    "shipping",
    "biotech",
    "textile",
    "aerospace",
    "furniture",
    "telecommunications",
];

pub(super) const OCCUPATION: &[&str] = &[
    "engineer",
    "chemist",
    "economist",
    "architect",
    "physician",
    "designer",
    "geologist",
    "entrepreneur",
    "mathematician",
    "journalist",
];

pub(super) const PRODUCT_KIND: &[&str] = &[
    "drone",
    "water filter",
    "solar inverter",
    "sensor kit",
    "espresso machine",
    "e-bike",
    "database engine",
    "drill press",
    "heat pump",
    "camera",
];

pub(super) const COUNTRY: &[&str] =
    &["Norland", "Estavia", "Sudmark", "Korvania", "Westria", "Alcadia"];

pub(super) const RIVERS: &[&str] =
    &["Amsel", "Brisk", "Corra", "Dune", "Elbe", "Fenn", "Gale", "Hollow"];

pub(super) fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub(super) fn word(r: &mut impl Rng, parts: usize) -> String {
    let w: String = (0..parts).map(|_| *SYL.choose(r).unwrap_or(&"ka")).collect();
    cap(&w)
}

pub(super) struct City {
    pub(super) name: String,
    pub(super) country: &'static str,
    pub(super) population: u64,
    pub(super) river: &'static str,
}

pub(super) struct Person {
    pub(super) name: String,
    pub(super) birth_year: u32,
    pub(super) birth_city: usize,
    pub(super) occupation: &'static str,
    pub(super) employer: usize,
}

pub(super) struct Company {
    pub(super) name: String,
    pub(super) founded: u32,
    pub(super) hq: usize,
    pub(super) founder: usize,
    pub(super) industry: &'static str,
}

pub(super) struct Product {
    pub(super) name: String,
    pub(super) maker: usize,
    pub(super) year: u32,
    pub(super) kind: &'static str,
}

/// Entity kinds with the index of the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ent {
    City(usize),
    Person(usize),
    Company(usize),
    Product(usize),
}

pub(super) struct World {
    pub(super) cities: Vec<City>,
    pub(super) people: Vec<Person>,
    pub(super) companies: Vec<Company>,
    pub(super) products: Vec<Product>,
}

impl World {
    pub(super) fn name(&self, e: Ent) -> &str {
        match e {
            Ent::City(i) => &self.cities[i].name,
            Ent::Person(i) => &self.people[i].name,
            Ent::Company(i) => &self.companies[i].name,
            Ent::Product(i) => &self.products[i].name,
        }
    }

    pub(super) fn generate(r: &mut impl Rng) -> World {
        let mut used = BTreeSet::new();
        let mut fresh = |r: &mut dyn FnMut() -> String| loop {
            let n = r();
            if used.insert(n.clone()) {
                return n;
            }
        };
        let n_city = r.random_range(24..=36);
        let mut cities = Vec::new();
        for _ in 0..n_city {
            let name = fresh(&mut || {
                let base = word(r, 2);
                if r.random_bool(0.2) { format!("Port {base}") } else { base }
            });
            cities.push(City {
                name,
                country: COUNTRY[r.random_range(0..COUNTRY.len())],
                population: r.random_range(12..=3200) * 1000 + r.random_range(0..1000),
                river: RIVERS[r.random_range(0..RIVERS.len())],
            });
        }
        // Companies in stem families: the same stem with different suffixes are near-misses.
        let n_comp = r.random_range(45..=70);
        let mut companies = Vec::new();
        while companies.len() < n_comp {
            let stem = word(r, 2);
            let k = r.random_range(1..=3);
            let mut sufs: Vec<&str> = COMPANY_SUFFIX.to_vec();
            sufs.shuffle(r);
            for s in sufs.into_iter().take(k) {
                let name = format!("{stem} {s}");
                if used.insert(name.clone()) {
                    companies.push(Company {
                        name,
                        founded: r.random_range(1950..=2018),
                        hq: r.random_range(0..cities.len()),
                        founder: 0,
                        industry: INDUSTRY[r.random_range(0..INDUSTRY.len())],
                    });
                }
            }
        }
        companies.truncate(n_comp);
        // People in surname families.
        let n_people = r.random_range(80..=110);
        let mut people = Vec::new();
        while people.len() < n_people {
            let surname = word(r, 2);
            for _ in 0..r.random_range(1..=3) {
                let name = format!("{} {surname}", word(r, 2));
                if used.insert(name.clone()) {
                    people.push(Person {
                        name,
                        birth_year: r.random_range(1935..=1998),
                        birth_city: r.random_range(0..cities.len()),
                        occupation: OCCUPATION[r.random_range(0..OCCUPATION.len())],
                        employer: r.random_range(0..companies.len()),
                    });
                }
            }
        }
        people.truncate(n_people);
        // Founders: distinct people.
        let mut order: Vec<usize> = (0..people.len()).collect();
        order.shuffle(r);
        for (c, p) in companies.iter_mut().zip(order.iter().cycle()) {
            c.founder = *p;
        }
        let n_prod = r.random_range(35..=55);
        let mut products = Vec::new();
        while products.len() < n_prod {
            let kind = PRODUCT_KIND[r.random_range(0..PRODUCT_KIND.len())];
            let name = format!(
                "{} {}",
                word(r, 2),
                r.random_range(2..=9) * 100 + r.random_range(0..10) * 10
            );
            if used.insert(name.clone()) {
                products.push(Product {
                    name,
                    maker: r.random_range(0..companies.len()),
                    year: r.random_range(1970..=2024),
                    kind,
                });
            }
        }
        World { cities, people, companies, products }
    }
}

/// One indexed document.
pub(super) struct Doc {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) about: Option<Ent>,
}

pub(super) fn fmt_pop(p: u64) -> String {
    let s = p.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn write_docs(w: &World, r: &mut impl Rng) -> Vec<Doc> {
    let style = r.random_range(0..2);
    let mut docs = Vec::new();
    for (i, c) in w.cities.iter().enumerate() {
        let body = if style == 0 {
            format!(
                "{} is a city in {} with a population of {}. It lies on the {} river.",
                c.name,
                c.country,
                fmt_pop(c.population),
                c.river
            )
        } else {
            format!(
                "Located on the banks of the {}, {} is a city of {} inhabitants in {}.",
                c.river,
                c.name,
                fmt_pop(c.population),
                c.country
            )
        };
        docs.push(Doc {
            id: String::new(),
            title: c.name.clone(),
            body,
            about: Some(Ent::City(i)),
        });
    }
    for (i, p) in w.people.iter().enumerate() {
        let city = &w.cities[p.birth_city].name;
        let emp = &w.companies[p.employer].name;
        let founded: Vec<&str> =
            w.companies.iter().filter(|c| c.founder == i).map(|c| c.name.as_str()).collect();
        let mut body = if style == 0 {
            format!(
                "{} is a {} born in {} in {}. {} currently works at {}.",
                p.name, p.occupation, city, p.birth_year, p.name, emp
            )
        } else {
            format!(
                "Born in {} in {}, {} is a {}. Current employer: {}.",
                p.birth_year, city, p.name, p.occupation, emp
            )
        };
        if !founded.is_empty() {
            body.push_str(&format!(" {} founded {}.", p.name, founded.join(" and ")));
        }
        docs.push(Doc {
            id: String::new(),
            title: p.name.clone(),
            body,
            about: Some(Ent::Person(i)),
        });
    }
    for (i, c) in w.companies.iter().enumerate() {
        let hq = &w.cities[c.hq].name;
        let founder = &w.people[c.founder].name;
        let made: Vec<&str> =
            w.products.iter().filter(|p| p.maker == i).map(|p| p.name.as_str()).collect();
        let mut body = if style == 0 {
            format!(
                "{} is a {} company founded in {} by {}. Its headquarters are in {}.",
                c.name, c.industry, c.founded, founder, hq
            )
        } else {
            format!(
                "Founded by {} in {}, {} is a {} firm headquartered in {}.",
                founder, c.founded, c.name, c.industry, hq
            )
        };
        if !made.is_empty() {
            body.push_str(&format!(" Its products include {}.", made.join(", ")));
        }
        docs.push(Doc {
            id: String::new(),
            title: c.name.clone(),
            body,
            about: Some(Ent::Company(i)),
        });
    }
    for (i, p) in w.products.iter().enumerate() {
        let maker = &w.companies[p.maker].name;
        let body = format!(
            "The {} is a {} made by {}, first released in {}.",
            p.name, p.kind, maker, p.year
        );
        docs.push(Doc {
            id: String::new(),
            title: p.name.clone(),
            body,
            about: Some(Ent::Product(i)),
        });
    }
    // News items: distractors that mention entities without giving their facts.
    let n_news = r.random_range(60..=100);
    for _ in 0..n_news {
        let c1 = &w.companies[r.random_range(0..w.companies.len())];
        let c2 = &w.companies[r.random_range(0..w.companies.len())];
        let p = &w.people[r.random_range(0..w.people.len())];
        let city = &w.cities[r.random_range(0..w.cities.len())];
        let year = r.random_range(1990..=2025);
        let (title, body) = match r.random_range(0..4) {
            0 => (
                format!("{} and {} sign supply deal", c1.name, c2.name),
                format!(
                    "In {year}, {} and {} agreed a supply deal announced at a trade fair in {}.",
                    c1.name, c2.name, city.name
                ),
            ),
            1 => (
                format!("{} speaks at {} conference", p.name, city.name),
                format!(
                    "{} gave the keynote at the {year} industry conference in {}, mentioning {}.",
                    p.name, city.name, c1.name
                ),
            ),
            2 => (
                format!("{} opens office in {}", c1.name, city.name),
                format!(
                    "{} opened a regional office in {} in {year}; the city council welcomed the move.",
                    c1.name, city.name
                ),
            ),
            _ => (
                format!("Award for {}", p.name),
                format!(
                    "{} received a {year} innovation award for work with {} in {}.",
                    p.name, c2.name, city.name
                ),
            ),
        };
        docs.push(Doc { id: String::new(), title, body, about: None });
    }
    docs.shuffle(r);
    let base = r.random_range(100..900);
    for (i, d) in docs.iter_mut().enumerate() {
        d.id = format!("doc-{}", base + i * 7);
    }
    docs
}
