//! The search family's questions: the multi-hop candidates per difficulty ([`Q`],
//! [`candidates`]) and the hops, notes and answer a reference follows ([`plan`]).

use super::*;

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) enum Q {
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
    pub(super) fn difficulty(&self) -> u8 {
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

pub(super) fn candidates(w: &World, d: u8) -> Vec<Q> {
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
pub(super) struct Plan {
    pub(super) prompt: String,
    pub(super) chains: Vec<Vec<Ent>>,
    pub(super) expected: Value,
    /// Why each hop leads to the next (reasoning lines, per chain per hop).
    pub(super) notes: Vec<Vec<String>>,
}

pub(super) fn plan(w: &World, q: &Q) -> Plan {
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
