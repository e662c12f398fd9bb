//! Family `search`: a search agent over a generated corpus. Each instance invents a small world
//! (cities, people, companies, products) whose facts link to each other, writes one short
//! document per entity plus news items that mention several entities, and indexes them with
//! `tantivy` in RAM (built once per instance). Questions are multi-hop chains anchored on a named
//! entity (1 to 4 hops, or two chains compared), so the unique answer needs several searches and
//! reads; names come in families of near-misses ("Norvex Labs", "Norvex Systems") that act as
//! distractors. The answer is submitted with `submit_answer` and compared tolerantly.

use std::collections::BTreeSet;
use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, Schema, TEXT, Value as _};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, doc};

use super::answer;
use crate::error::{Error, Result};
use crate::families::common::{Base, TaskParts, turn};
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::util::{call, name_hash, rng};

const NAME: &str = "search";
const VERSION: u32 = 1;
const INSTANCES: u64 = 1000;
const TASKS: u64 = 200;

const SYL: &[&str] = &[
    "nor", "vex", "tal", "ira", "bren", "ko", "mar", "lin", "dor", "sa", "vel", "mo", "ra", "kas",
    "trel", "an", "qui", "zen", "pho", "lum", "ser", "ta", "gal", "ven", "ori", "bel", "cas",
    "dru",
];
const COMPANY_SUFFIX: &[&str] = &[
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
const INDUSTRY: &[&str] = &[
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
const OCCUPATION: &[&str] = &[
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
const PRODUCT_KIND: &[&str] = &[
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
const COUNTRY: &[&str] = &["Norland", "Estavia", "Sudmark", "Korvania", "Westria", "Alcadia"];
const RIVERS: &[&str] = &["Amsel", "Brisk", "Corra", "Dune", "Elbe", "Fenn", "Gale", "Hollow"];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn word(r: &mut impl Rng, parts: usize) -> String {
    let w: String = (0..parts).map(|_| *SYL.choose(r).unwrap_or(&"ka")).collect();
    cap(&w)
}

struct City {
    name: String,
    country: &'static str,
    population: u64,
    river: &'static str,
}
struct Person {
    name: String,
    birth_year: u32,
    birth_city: usize,
    occupation: &'static str,
    employer: usize,
}
struct Company {
    name: String,
    founded: u32,
    hq: usize,
    founder: usize,
    industry: &'static str,
}
struct Product {
    name: String,
    maker: usize,
    year: u32,
    kind: &'static str,
}

/// Entity kinds with the index of the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ent {
    City(usize),
    Person(usize),
    Company(usize),
    Product(usize),
}

struct World {
    cities: Vec<City>,
    people: Vec<Person>,
    companies: Vec<Company>,
    products: Vec<Product>,
}

impl World {
    fn name(&self, e: Ent) -> &str {
        match e {
            Ent::City(i) => &self.cities[i].name,
            Ent::Person(i) => &self.people[i].name,
            Ent::Company(i) => &self.companies[i].name,
            Ent::Product(i) => &self.products[i].name,
        }
    }

    fn generate(r: &mut impl Rng) -> World {
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
struct Doc {
    id: String,
    title: String,
    body: String,
    about: Option<Ent>,
}

fn fmt_pop(p: u64) -> String {
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

fn write_docs(w: &World, r: &mut impl Rng) -> Vec<Doc> {
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

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Q {
    CompanyFounded(usize),
    PersonBirthYear(usize),
    CityPopulation(usize),
    CompanyHq(usize),
    FounderBirthCity(usize),
    MakerFounded(usize),
    EmployerHq(usize),
    FounderBirthCityPopulation(usize),
    MakerFounderBirthYear(usize),
    EmployerHqCountry(usize),
    /// Which of the two products' makers was founded earlier.
    EarlierMaker(usize, usize),
    /// Which of the two companies' founders was born earlier.
    OlderFounder(usize, usize),
    ProductFounderBirthCountry(usize),
    FounderEmployerHqPopulation(usize),
}

impl Q {
    fn difficulty(&self) -> u8 {
        match self {
            Q::CompanyFounded(_)
            | Q::PersonBirthYear(_)
            | Q::CityPopulation(_)
            | Q::CompanyHq(_) => 1,
            Q::FounderBirthCity(_) | Q::MakerFounded(_) | Q::EmployerHq(_) => 2,
            Q::FounderBirthCityPopulation(_)
            | Q::MakerFounderBirthYear(_)
            | Q::EmployerHqCountry(_) => 3,
            Q::EarlierMaker(..) | Q::OlderFounder(..) => 4,
            Q::ProductFounderBirthCountry(_) | Q::FounderEmployerHqPopulation(_) => 5,
        }
    }
}

fn candidates(w: &World, d: u8) -> Vec<Q> {
    let (nc, np, nk, nd) = (w.cities.len(), w.people.len(), w.companies.len(), w.products.len());
    let mut out = Vec::new();
    match d {
        1 => {
            out.extend((0..nk).map(Q::CompanyFounded));
            out.extend((0..np).map(Q::PersonBirthYear));
            out.extend((0..nc).map(Q::CityPopulation));
            out.extend((0..nk).map(Q::CompanyHq));
        }
        2 => {
            out.extend((0..nk).map(Q::FounderBirthCity));
            out.extend((0..nd).map(Q::MakerFounded));
            out.extend((0..np).map(Q::EmployerHq));
        }
        3 => {
            out.extend((0..nk).map(Q::FounderBirthCityPopulation));
            out.extend((0..nd).map(Q::MakerFounderBirthYear));
            out.extend((0..np).map(Q::EmployerHqCountry));
        }
        4 => {
            for a in 0..nd {
                for b in [a + 1, a + 7, a + 13] {
                    let b = b % nd;
                    let (ma, mb) = (w.products[a].maker, w.products[b].maker);
                    if a != b && w.companies[ma].founded != w.companies[mb].founded {
                        out.push(Q::EarlierMaker(a, b));
                    }
                }
            }
            for a in 0..nk {
                let b = (a + 5) % nk;
                let (fa, fb) = (w.companies[a].founder, w.companies[b].founder);
                if a != b && w.people[fa].birth_year != w.people[fb].birth_year {
                    out.push(Q::OlderFounder(a, b));
                }
            }
        }
        _ => {
            out.extend((0..nd).map(Q::ProductFounderBirthCountry));
            out.extend((0..nk).map(Q::FounderEmployerHqPopulation));
        }
    }
    out
}

/// A question's hops: each chain is the list of entities read in order; the answer.
struct Plan {
    prompt: String,
    chains: Vec<Vec<Ent>>,
    expected: Value,
    /// Why each hop leads to the next (reasoning lines, per chain per hop).
    notes: Vec<Vec<String>>,
}

fn plan(w: &World, q: &Q) -> Plan {
    let co = |i: usize| &w.companies[i];
    let pe = |i: usize| &w.people[i];
    let ci = |i: usize| &w.cities[i];
    let pr = |i: usize| &w.products[i];
    let one = |prompt: String, chain: Vec<Ent>, notes: Vec<String>, expected: Value| Plan {
        prompt,
        chains: vec![chain],
        expected,
        notes: vec![notes],
    };
    match *q {
        Q::CompanyFounded(c) => one(
            format!("In what year was {} founded?", co(c).name),
            vec![Ent::Company(c)],
            vec![format!(
                "The {} document gives the founding year: {}.",
                co(c).name,
                co(c).founded
            )],
            answer::int(co(c).founded.into()),
        ),
        Q::PersonBirthYear(p) => one(
            format!("In what year was {} born?", pe(p).name),
            vec![Ent::Person(p)],
            vec![format!("{} was born in {}.", pe(p).name, pe(p).birth_year)],
            answer::int(pe(p).birth_year.into()),
        ),
        Q::CityPopulation(c) => one(
            format!("What is the population of {}? Answer with the number.", ci(c).name),
            vec![Ent::City(c)],
            vec![format!("{} has a population of {}.", ci(c).name, fmt_pop(ci(c).population))],
            answer::int(ci(c).population as i64),
        ),
        Q::CompanyHq(c) => one(
            format!("In which city is {} headquartered?", co(c).name),
            vec![Ent::Company(c)],
            vec![format!("{} is headquartered in {}.", co(c).name, ci(co(c).hq).name)],
            answer::text(&ci(co(c).hq).name),
        ),
        Q::FounderBirthCity(c) => {
            let f = co(c).founder;
            one(
                format!("In which city was the founder of {} born?", co(c).name),
                vec![Ent::Company(c), Ent::Person(f)],
                vec![
                    format!(
                        "{} was founded by {}; next I need {}'s birthplace.",
                        co(c).name,
                        pe(f).name,
                        pe(f).name
                    ),
                    format!("{} was born in {}.", pe(f).name, ci(pe(f).birth_city).name),
                ],
                answer::text(&ci(pe(f).birth_city).name),
            )
        }
        Q::MakerFounded(p) => {
            let m = pr(p).maker;
            one(
                format!("In what year was the company that makes the {} founded?", pr(p).name),
                vec![Ent::Product(p), Ent::Company(m)],
                vec![
                    format!(
                        "The {} is made by {}; now I need when {} was founded.",
                        pr(p).name,
                        co(m).name,
                        co(m).name
                    ),
                    format!("{} was founded in {}.", co(m).name, co(m).founded),
                ],
                answer::int(co(m).founded.into()),
            )
        }
        Q::EmployerHq(p) => {
            let e = pe(p).employer;
            one(
                format!(
                    "In which city is the headquarters of the company {} currently works at?",
                    pe(p).name
                ),
                vec![Ent::Person(p), Ent::Company(e)],
                vec![
                    format!(
                        "{} works at {}; next, where {} is headquartered.",
                        pe(p).name,
                        co(e).name,
                        co(e).name
                    ),
                    format!("{} is headquartered in {}.", co(e).name, ci(co(e).hq).name),
                ],
                answer::text(&ci(co(e).hq).name),
            )
        }
        Q::FounderBirthCityPopulation(c) => {
            let f = co(c).founder;
            let bc = pe(f).birth_city;
            one(
                format!(
                    "What is the population of the city where the founder of {} was born?",
                    co(c).name
                ),
                vec![Ent::Company(c), Ent::Person(f), Ent::City(bc)],
                vec![
                    format!("{} was founded by {}.", co(c).name, pe(f).name),
                    format!(
                        "{} was born in {}; now the population of {}.",
                        pe(f).name,
                        ci(bc).name,
                        ci(bc).name
                    ),
                    format!("{} has a population of {}.", ci(bc).name, fmt_pop(ci(bc).population)),
                ],
                answer::int(ci(bc).population as i64),
            )
        }
        Q::MakerFounderBirthYear(p) => {
            let m = pr(p).maker;
            let f = co(m).founder;
            one(
                format!(
                    "In what year was the founder of the company that makes the {} born?",
                    pr(p).name
                ),
                vec![Ent::Product(p), Ent::Company(m), Ent::Person(f)],
                vec![
                    format!("The {} is made by {}.", pr(p).name, co(m).name),
                    format!("{} was founded by {}.", co(m).name, pe(f).name),
                    format!("{} was born in {}.", pe(f).name, pe(f).birth_year),
                ],
                answer::int(pe(f).birth_year.into()),
            )
        }
        Q::EmployerHqCountry(p) => {
            let e = pe(p).employer;
            let hq = co(e).hq;
            one(
                format!(
                    "In which country is the headquarters city of {}'s current employer?",
                    pe(p).name
                ),
                vec![Ent::Person(p), Ent::Company(e), Ent::City(hq)],
                vec![
                    format!("{} works at {}.", pe(p).name, co(e).name),
                    format!("{} is headquartered in {}.", co(e).name, ci(hq).name),
                    format!("{} is in {}.", ci(hq).name, ci(hq).country),
                ],
                answer::text(ci(hq).country),
            )
        }
        Q::EarlierMaker(a, b) => {
            let (ma, mb) = (pr(a).maker, pr(b).maker);
            let win = if co(ma).founded < co(mb).founded { ma } else { mb };
            Plan {
                prompt: format!(
                    "Which was founded earlier: the company that makes the {} or the company that makes the {}? Answer with the company name.",
                    pr(a).name,
                    pr(b).name
                ),
                chains: vec![
                    vec![Ent::Product(a), Ent::Company(ma)],
                    vec![Ent::Product(b), Ent::Company(mb)],
                ],
                expected: answer::text(&co(win).name),
                notes: vec![
                    vec![
                        format!("The {} is made by {}.", pr(a).name, co(ma).name),
                        format!("{} was founded in {}.", co(ma).name, co(ma).founded),
                    ],
                    vec![
                        format!("The {} is made by {}.", pr(b).name, co(mb).name),
                        format!("{} was founded in {}.", co(mb).name, co(mb).founded),
                    ],
                ],
            }
        }
        Q::OlderFounder(a, b) => {
            let (fa, fb) = (co(a).founder, co(b).founder);
            let win = if pe(fa).birth_year < pe(fb).birth_year { fa } else { fb };
            Plan {
                prompt: format!(
                    "Who was born earlier: the founder of {} or the founder of {}? Answer with the person's name.",
                    co(a).name,
                    co(b).name
                ),
                chains: vec![
                    vec![Ent::Company(a), Ent::Person(fa)],
                    vec![Ent::Company(b), Ent::Person(fb)],
                ],
                expected: answer::text(&pe(win).name),
                notes: vec![
                    vec![
                        format!("{} was founded by {}.", co(a).name, pe(fa).name),
                        format!("{} was born in {}.", pe(fa).name, pe(fa).birth_year),
                    ],
                    vec![
                        format!("{} was founded by {}.", co(b).name, pe(fb).name),
                        format!("{} was born in {}.", pe(fb).name, pe(fb).birth_year),
                    ],
                ],
            }
        }
        Q::ProductFounderBirthCountry(p) => {
            let m = pr(p).maker;
            let f = co(m).founder;
            let bc = pe(f).birth_city;
            one(
                format!(
                    "In which country was the founder of the maker of the {} born?",
                    pr(p).name
                ),
                vec![Ent::Product(p), Ent::Company(m), Ent::Person(f), Ent::City(bc)],
                vec![
                    format!(
                        "The {} is made by {} (not one of the similarly named companies).",
                        pr(p).name,
                        co(m).name
                    ),
                    format!("{} was founded by {}.", co(m).name, pe(f).name),
                    format!("{} was born in {}.", pe(f).name, ci(bc).name),
                    format!("{} is in {}.", ci(bc).name, ci(bc).country),
                ],
                answer::text(ci(bc).country),
            )
        }
        Q::FounderEmployerHqPopulation(c) => {
            let f = co(c).founder;
            let e = pe(f).employer;
            let hq = co(e).hq;
            one(
                format!(
                    "The founder of {} currently works at some company. What is the population of the city where that company is headquartered?",
                    co(c).name
                ),
                vec![Ent::Company(c), Ent::Person(f), Ent::Company(e), Ent::City(hq)],
                vec![
                    format!("{} was founded by {}.", co(c).name, pe(f).name),
                    format!("{} currently works at {}.", pe(f).name, co(e).name),
                    format!("{} is headquartered in {}.", co(e).name, ci(hq).name),
                    format!("{} has a population of {}.", ci(hq).name, fmt_pop(ci(hq).population)),
                ],
                answer::int(ci(hq).population as i64),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The search-agent family.
pub struct SearchFamily;

impl Family for SearchFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: INSTANCES, tasks_per_instance: TASKS }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Error::check_instance_seed(NAME, instance_seed, INSTANCES)?;
        Ok(Arc::new(SearchInstance::build(instance_seed)?))
    }
}

/// One corpus, its index and its questions.
pub struct SearchInstance {
    base: Base,
    world: World,
    docs: Vec<Doc>,
    reader: IndexReader,
    parser: QueryParser,
    ord: Field,
    questions: [Vec<Q>; 5],
    system_prompt: String,
    default_k: usize,
}

fn index_err(e: impl std::fmt::Display) -> Error {
    Error::Index { family: NAME.into(), reason: e.to_string() }
}

impl SearchInstance {
    fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[name_hash(NAME), seed]);
        let world = World::generate(&mut r);
        let docs = write_docs(&world, &mut r);
        let mut sb = Schema::builder();
        let ord = sb.add_u64_field("ord", STORED);
        let title = sb.add_text_field("title", TEXT);
        let body = sb.add_text_field("body", TEXT);
        let index = Index::create_in_ram(sb.build());
        {
            let mut writer: IndexWriter =
                index.writer_with_num_threads(1, 15_000_000).map_err(index_err)?;
            for (i, d) in docs.iter().enumerate() {
                writer
                    .add_document(
                        doc!(ord => i as u64, title => d.title.as_str(), body => d.body.as_str()),
                    )
                    .map_err(index_err)?;
            }
            writer.commit().map_err(index_err)?;
            writer.wait_merging_threads().map_err(index_err)?;
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let mut parser = QueryParser::for_index(&index, vec![title, body]);
        parser.set_field_boost(title, 3.0);
        let mut questions: [Vec<Q>; 5] = Default::default();
        for (i, qs) in questions.iter_mut().enumerate() {
            let mut c = candidates(&world, i as u8 + 1);
            c.shuffle(&mut r);
            if (c.len() as u64) < TASKS / 5 {
                return Err(Error::Generation {
                    family: NAME.into(),
                    reason: format!(
                        "instance {seed}: only {} questions of difficulty {}",
                        c.len(),
                        i + 1
                    ),
                });
            }
            *qs = c;
        }
        let mut allowed = vec!["search", "open"];
        if r.random_bool(0.5) {
            allowed.push("find_in_page");
        }
        allowed.push("submit_answer");
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let default_k = [3usize, 5, 5, 8][r.random_range(0..4)];
        let system_prompt = format!(
            "You are a research assistant with access to a private encyclopedia of {} documents about cities, people, companies and products. \
             The documents are the only source of truth: do not rely on outside knowledge. Use search to find documents (it returns ids, titles and snippets; {} results unless you ask for more), \
             open to read a document in full, and follow the facts from one document to the next. Many names are similar, so check that a document is about exactly the entity you need. \
             When you are sure, call submit_answer once with the answer only; submissions are final.",
            docs.len(),
            default_k
        );
        Ok(SearchInstance {
            base,
            world,
            docs,
            reader,
            parser,
            ord,
            questions,
            system_prompt,
            default_k,
        })
    }

    /// Ranked document indices for a query.
    fn search(&self, query: &str, k: usize) -> std::result::Result<Vec<usize>, String> {
        let (q, _errors) = self.parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(k))
            .map_err(|e| format!("search failed: {e}"))?;
        let mut out = Vec::with_capacity(top.len());
        for (_score, addr) in top {
            let d: TantivyDocument =
                searcher.doc(addr).map_err(|e| format!("search failed: {e}"))?;
            if let Some(i) = d.get_first(self.ord).and_then(|v| v.as_u64()) {
                out.push(i as usize);
            }
        }
        Ok(out)
    }

    fn doc_of(&self, e: Ent) -> usize {
        self.docs.iter().position(|d| d.about == Some(e)).unwrap_or(0)
    }

    fn by_id(&self, id: &str) -> Option<&Doc> {
        self.docs.iter().find(|d| d.id == id.trim())
    }
}

fn snippet(body: &str) -> String {
    if body.len() <= 120 {
        return body.to_owned();
    }
    let mut end = 117;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &body[..end])
}

impl Instance for SearchInstance {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        Error::check_task_seed(NAME, task_seed, TASKS)?;
        let d = (task_seed % 5) as usize;
        let j = (task_seed / 5) as usize;
        let q = self.questions[d]
            .get(j)
            .cloned()
            .ok_or_else(|| self.base.gen_error("question index out of range"))?;
        let p = plan(&self.world, &q);
        let mut turns = Vec::new();
        let hops = p.chains.iter().map(Vec::len).max().unwrap_or(0);
        for h in 0..hops {
            // One turn of parallel searches (one per chain still going), then one of opens.
            let mut searches = Vec::new();
            let mut opens = Vec::new();
            let mut why = Vec::new();
            for (ci, chain) in p.chains.iter().enumerate() {
                let Some(&e) = chain.get(h) else { continue };
                let name = self.world.name(e);
                let target = self.doc_of(e);
                let ranked = self.search(name, 10).map_err(|e| self.base.gen_error(e))?;
                let k = match ranked.iter().position(|&x| x == target) {
                    Some(pos) if pos < self.default_k => None,
                    Some(pos) => Some((pos + 1).max(5) as i64),
                    None => Some(10),
                };
                searches.push(call("search", json!({ "query": name, "k": k })));
                opens.push(call("open", json!({ "doc_id": self.docs[target].id })));
                why.push(name.to_owned());
                let _ = ci;
            }
            let intro = if h == 0 {
                format!("I need to find the document about {} first.", why.join(" and "))
            } else {
                let prev: Vec<&str> =
                    p.notes.iter().filter_map(|n| n.get(h - 1).map(String::as_str)).collect();
                format!("{} Next I'll look up {}.", prev.join(" "), why.join(" and "))
            };
            turns.push(turn(intro, searches));
            turns.push(turn(
                format!("The search results include the document titled exactly {}; I'll open it to read the facts.", why.join(" / ")),
                opens,
            ));
        }
        let shown = answer::display(&p.expected);
        let last: Vec<&str> = p.notes.iter().filter_map(|n| n.last().map(String::as_str)).collect();
        turns.push(turn(
            format!("{} So the answer is {shown}.", last.join(" ")),
            vec![call("submit_answer", json!({ "answer": shown }))],
        ));
        Ok(self.base.finish(
            task_seed,
            TaskParts {
                difficulty: q.difficulty(),
                system_prompt: self.system_prompt.clone(),
                user_prompt: p.prompt,
                initial_state: answer::initial_state(),
                turns,
                final_answer: format!("The answer is {shown}."),
                hidden: json!({ "question": format!("{q:?}"), "answer": p.expected }),
            },
        ))
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match name {
            "search" => {
                let query = text("query");
                if query.trim().is_empty() {
                    return ToolResult::error("query must not be empty");
                }
                // Length, nesting and term count are bounded before tantivy's recursive parser.
                if let Err(r) = crate::limits::check_search_query(&query) {
                    return r;
                }
                let k = args
                    .get("k")
                    .and_then(Value::as_i64)
                    .map(|k| k.clamp(1, 10) as usize)
                    .unwrap_or(self.default_k);
                match self.search(&query, k) {
                    Ok(hits) => {
                        let results: Vec<Value> = hits
                            .iter()
                            .map(|&i| json!({ "doc_id": self.docs[i].id, "title": self.docs[i].title, "snippet": snippet(&self.docs[i].body) }))
                            .collect();
                        ToolResult::read(&json!({ "query": query, "results": results }))
                    }
                    Err(e) => ToolResult::error(e),
                }
            }
            "open" => match self.by_id(&text("doc_id")) {
                Some(d) => {
                    ToolResult::read(&json!({ "doc_id": d.id, "title": d.title, "text": d.body }))
                }
                None => ToolResult::error(format!("no document with id {:?}", text("doc_id"))),
            },
            "find_in_page" => {
                let Some(d) = self.by_id(&text("doc_id")) else {
                    return ToolResult::error(format!("no document with id {:?}", text("doc_id")));
                };
                let pat = text("pattern").to_lowercase();
                if pat.trim().is_empty() {
                    return ToolResult::error("pattern must not be empty");
                }
                let hits: Vec<&str> = d
                    .body
                    .split_inclusive(". ")
                    .map(str::trim)
                    .filter(|s| s.to_lowercase().contains(&pat))
                    .collect();
                ToolResult::read(
                    &json!({ "doc_id": d.id, "pattern": text("pattern"), "matches": hits }),
                )
            }
            "submit_answer" => answer::submit(state, &args),
            other => ToolResult::error(format!("unknown tool {other:?}")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let expected = task.hidden.get("answer").cloned().unwrap_or(Value::Null);
        Verdict::from_checks(answer::checks(state, &expected))
    }
}
