//! Family `search`: a search agent over a generated corpus. Each instance invents a small world
//! (cities, people, companies, products) whose facts link to each other, writes one short
//! document per entity plus news items that mention several entities, and indexes them with
//! `tantivy` in RAM (built once per instance). Questions are multi-hop chains anchored on a named
//! entity (1 to 4 hops, or two chains compared), so the unique answer needs several searches and
//! reads; names come in families of near-misses ("Norvex Labs", "Norvex Systems") that act as
//! distractors. The answer is submitted with `submit_answer` and compared tolerantly.

use std::collections::BTreeSet;

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
use crate::families::common::{Base, TASKS, TaskParts, builtin_family, shuffled_candidates, turn};
use crate::framework::{Instance, State, TaskSpec, ToolResult, Verdict};
use crate::util::{call, name_hash, rng};

mod questions;
mod world;

use questions::*;
use world::*;

const NAME: &str = "search";
const VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------

/// The search-agent family.
pub struct SearchFamily;

builtin_family!(SearchFamily, NAME, VERSION, SearchInstance::build);

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
        let lists = std::array::from_fn(|i| candidates(&world, i as u8 + 1));
        let questions = shuffled_candidates(NAME, seed, "questions", lists, &mut r)?;
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
                    .map_or(self.default_k, |k| k.clamp(1, 10) as usize);
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
