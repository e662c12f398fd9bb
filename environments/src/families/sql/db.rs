//! The sql family's database: building an instance (seeded rows into an in-memory SQLite
//! database), the read-only, bounded query path the agent's `run_query` uses (authorizer,
//! VM-step budget, heap and length limits, row cap), expected answers and `describe_table`.

use super::*;

pub(super) struct Db {
    pub(super) conn: Connection,
    pub(super) steps: Arc<AtomicU32>,
    /// The current query's wall-clock backstop, in nanoseconds since [`clock_base`].
    pub(super) deadline: Arc<AtomicU64>,
    /// Why the progress handler interrupted: 0 not, 1 step budget, 2 deadline.
    pub(super) tripped: Arc<AtomicU8>,
    /// `(table, row count)` in creation order.
    pub(super) tables: Vec<(String, i64)>,
    /// `describe_table` output per table.
    pub(super) descs: Vec<(String, Value)>,
}

/// Column names, rows, and whether rows were cut at the cap.
pub(super) type QueryRows = (Vec<String>, Vec<Vec<Value>>, bool);

/// A failed query: the message the agent sees and, for a bound, its limit code.
pub(super) struct SqlFail {
    pub(super) code: Option<&'static str>,
    pub(super) msg: String,
}

impl SqlFail {
    pub(super) fn plain(msg: impl Into<String>) -> Self {
        SqlFail { code: None, msg: msg.into() }
    }
    pub(super) fn observation(self) -> ToolResult {
        match self.code {
            Some(code) => limits::limit_error(code, self.msg),
            None => ToolResult::error(self.msg),
        }
    }
}

pub(super) fn clock_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

pub(super) fn nanos_since_base() -> u64 {
    clock_base().elapsed().as_nanos() as u64
}

pub(super) fn sqlite_err(source: rusqlite::Error) -> Error {
    Error::Sqlite { family: NAME.into(), source }
}

pub(super) fn pick<T: Copy>(r: &mut impl Rng, xs: &[T]) -> T {
    // Every list passed here is a non-empty constant.
    xs[r.random_range(0..xs.len())]
}

impl SqlInstance {
    pub(super) fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[crate::util::name_hash(NAME), seed]);
        let dom = &DOMAINS[(seed % 3) as usize];
        let normalised = r.random_bool(0.4);
        let a = pick(&mut r, dom.a_table);
        let b = pick(&mut r, dom.b_table);
        let f = pick(&mut r, dom.f_table);
        let singular = |t: &str| t.strip_suffix('s').unwrap_or(t).replace("ie", "y").clone();
        let mut cities: Vec<&'static str> = CITIES.to_vec();
        cities.shuffle(&mut r);
        cities.truncate(r.random_range(8..=14));
        let mut cats: Vec<&'static str> = dom.cat_values.to_vec();
        cats.shuffle(&mut r);
        cats.truncate(r.random_range(6..=8));
        let schema = Schema {
            dom,
            a,
            a_city: if normalised {
                format!("{}_id", pick(&mut r, &["city", "location", "site"]))
            } else {
                pick(&mut r, dom.a_city).to_owned()
            },
            a_seg: pick(&mut r, dom.a_seg),
            b,
            b_cat: pick(&mut r, dom.b_cat),
            b_price: pick(&mut r, dom.b_price),
            f,
            f_a: format!("{}_id", singular(a)),
            f_b: format!("{}_id", singular(b)),
            f_qty: pick(&mut r, dom.f_qty),
            f_status: pick(&mut r, dom.f_status),
            f_month: pick(&mut r, dom.f_month),
            c: normalised.then(|| pick(&mut r, &["cities", "locations", "sites"])),
            cities,
            segs: dom.seg_values.to_vec(),
            cats,
            statuses: dom.status_values.to_vec(),
            year: r.random_range(2019..=2025),
        };
        let db = build_db(&schema, &mut r)?;
        let lists = std::array::from_fn(|i| candidates(&schema, i as u8 + 1));
        let questions = shuffled_candidates(NAME, seed, "questions", lists, &mut r)?;
        let mut allowed = vec!["list_tables", "describe_table", "run_query"];
        if r.random_bool(0.5) {
            allowed.push("sample_rows");
        }
        allowed.push("submit_answer");
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let company = format!("{} {}", pick(&mut r, ADJ), pick(&mut r, NOUN));
        let system_prompt = format!(
            "You are a data analyst at {company}, {title}. You have read-only access to the company's SQLite database through the tools. \
             Inspect the schema before writing queries, use exact column values as stored (look them up when unsure), and compute answers with SQL rather than by hand. \
             Queries may not modify data; each query returns at most {ROW_CAP} rows and is stopped if it runs too long. \
             When you know the answer, call submit_answer exactly once with the value only (no units); submissions are final.",
            title = dom.title
        );
        Ok(SqlInstance {
            base,
            schema,
            db: Mutex::new(db),
            questions,
            slots: Slots::default(),
            system_prompt,
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Db> {
        // A poisoned lock only means another thread panicked mid-query; the connection is
        // still usable for read-only work.
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run a read-only query under the step budget: `(columns, rows, truncated)`.
    pub(super) fn query(&self, sql: &str, cap: usize) -> std::result::Result<QueryRows, SqlFail> {
        let db = self.lock();
        db.steps.store(0, Ordering::Relaxed);
        db.tripped.store(0, Ordering::Relaxed);
        db.deadline
            .store(nanos_since_base() + limits::SQL_DEADLINE.as_nanos() as u64, Ordering::Relaxed);
        let describe =
            |e: &rusqlite::Error| describe_sql_error(e, db.tripped.load(Ordering::Relaxed));
        let mut stmt = db.conn.prepare(sql).map_err(|e| describe(&e))?;
        if !stmt.readonly() {
            return Err(SqlFail::plain("only read-only SELECT statements are allowed"));
        }
        let cols: Vec<String> = stmt.column_names().iter().map(|c| (*c).to_owned()).collect();
        let n = cols.len();
        let mut rows_out = Vec::new();
        let mut truncated = false;
        let mut rows = stmt.query([]).map_err(|e| describe(&e))?;
        loop {
            match rows.next() {
                Ok(Some(row)) => {
                    if rows_out.len() == cap {
                        truncated = true;
                        break;
                    }
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(match row.get_ref(i) {
                            Ok(ValueRef::Integer(v)) => json!(v),
                            Ok(ValueRef::Real(v)) => json!(v),
                            Ok(ValueRef::Text(t)) => json!(String::from_utf8_lossy(t)),
                            Ok(ValueRef::Blob(b)) => json!(format!("<blob {} bytes>", b.len())),
                            _ => Value::Null,
                        });
                    }
                    rows_out.push(vals);
                }
                Ok(None) => break,
                Err(e) => return Err(describe(&e)),
            }
        }
        Ok((cols, rows_out, truncated))
    }

    /// The expected answer of a rendered question (`None` when degenerate: empty or zero).
    pub(super) fn expected(&self, q: &Rendered) -> Result<Option<Value>> {
        let (_, rows, _) = self.query(&q.sql, 10).map_err(|f| Error::Generation {
            family: NAME.into(),
            reason: format!("{}: {}", f.msg, q.sql),
        })?;
        let first = rows.first().and_then(|r| r.first()).cloned().unwrap_or(Value::Null);
        Ok(match q.shape {
            Shape::Int => first.as_i64().filter(|&v| v >= 0).map(answer::int),
            Shape::Dec2 => first.as_f64().filter(|&v| v >= 0.0).map(|v| answer::number(v, 2)),
            Shape::Pct2 => {
                first.as_f64().filter(|&v| v > 0.0 && v < 100.0).map(|v| answer::percent(v, 2))
            }
            Shape::Text => first.as_str().map(answer::text),
            Shape::List => {
                let names: Vec<String> =
                    rows.iter().filter_map(|r| r.first()?.as_str().map(str::to_owned)).collect();
                (names.len() == 3).then(|| answer::list(&names))
            }
        })
    }
}

pub(super) fn describe_sql_error(e: &rusqlite::Error, tripped: u8) -> SqlFail {
    use rusqlite::ErrorCode;
    let limit = |code, msg: String| SqlFail { code: Some(code), msg };
    match e {
        rusqlite::Error::MultipleStatement => {
            SqlFail::plain("only one SQL statement per call is allowed")
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            if tripped == 2 {
                limit(
                    limit_codes::SQL_DEADLINE,
                    format!(
                        "query interrupted: it ran longer than the {} s wall-clock backstop (add filters or avoid cross joins)",
                        limits::SQL_DEADLINE.as_secs()
                    ),
                )
            } else {
                limit(
                    limit_codes::SQL_STEPS,
                    "query interrupted: it exceeded the execution budget (add filters or avoid cross joins)"
                        .into(),
                )
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::TooBig => limit(
            limit_codes::SQL_LENGTH,
            format!(
                "SQL error: string or blob too big (at most {} bytes per value)",
                limits::SQL_MAX_LENGTH
            ),
        ),
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OutOfMemory => {
            limit(limit_codes::SQL_HEAP, "SQL error: the query needs too much memory".into())
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => SqlFail::plain(format!("SQL error: {msg}")),
        other => SqlFail::plain(format!("SQL error: {other}")),
    }
}

/// Process-wide SQLite heap cap (once).
pub(super) fn set_heap_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sqlite3_hard_heap_limit64 only sets a global under SQLite's own mutex.
    ONCE.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64(limits::SQL_HEAP_LIMIT);
    });
}

pub(super) fn build_db(s: &Schema, r: &mut impl Rng) -> Result<Db> {
    set_heap_limit();
    let conn = Connection::open_in_memory().map_err(sqlite_err)?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, limits::SQL_MAX_LENGTH)
        .map_err(sqlite_err)?;
    // Sorts and temporary tables stay in memory (under the heap limit), never in host files.
    conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(sqlite_err)?;
    let mut ddl = String::new();
    let mut tables = Vec::new();
    if let Some(c) = s.c {
        ddl.push_str(&format!("CREATE TABLE {c} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);\n"));
    }
    let city_col = if s.c.is_some() {
        format!("{} INTEGER NOT NULL REFERENCES {}(id)", s.a_city, s.c.unwrap_or_default())
    } else {
        format!("{} TEXT NOT NULL", s.a_city)
    };
    ddl.push_str(&format!(
        "CREATE TABLE {a} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, {city_col}, {seg} TEXT NOT NULL, joined_year INTEGER);\n\
         CREATE TABLE {b} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, {cat} TEXT NOT NULL, {price} REAL NOT NULL);\n\
         CREATE TABLE {f} (id INTEGER PRIMARY KEY, {fa} INTEGER NOT NULL REFERENCES {a}(id), {fb} INTEGER NOT NULL REFERENCES {b}(id), {q} INTEGER NOT NULL, {st} TEXT NOT NULL, {m} TEXT NOT NULL);\n",
        a = s.a, seg = s.a_seg, b = s.b, cat = s.b_cat, price = s.b_price, f = s.f, fa = s.f_a, fb = s.f_b,
        q = s.f_qty, st = s.f_status, m = s.f_month
    ));
    let n_distractors = r.random_range(0..=3usize);
    let mut distractors: Vec<usize> = (0..DISTRACTORS.len()).collect();
    distractors.shuffle(r);
    distractors.truncate(n_distractors);
    for &di in &distractors {
        let (name, cols) = DISTRACTORS[di];
        let cols: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
        ddl.push_str(&format!(
            "CREATE TABLE {name} (id INTEGER PRIMARY KEY, {});\n",
            cols.join(", ")
        ));
    }
    conn.execute_batch(&ddl).map_err(sqlite_err)?;

    let tx = conn.unchecked_transaction().map_err(sqlite_err)?;
    if let Some(c) = s.c {
        let mut st = tx
            .prepare(&format!("INSERT INTO {c} (id, name, country) VALUES (?1, ?2, ?3)"))
            .map_err(sqlite_err)?;
        for (i, name) in s.cities.iter().enumerate() {
            st.execute(rusqlite::params![i as i64 + 1, name, pick(r, COUNTRIES)])
                .map_err(sqlite_err)?;
        }
        tables.push((c.to_owned(), s.cities.len() as i64));
    }
    // a: unique person-like or store-like names.
    let n_a = r.random_range(60..=140usize);
    let mut names = std::collections::BTreeSet::new();
    let a_base = i64::from(r.random_range(1..=9)) * 100;
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, name, {}, {}, joined_year) VALUES (?1, ?2, ?3, ?4, ?5)",
                s.a, s.a_city, s.a_seg
            ))
            .map_err(sqlite_err)?;
        let mut i = 0;
        let mut collisions = 0u32;
        while i < n_a {
            let name = if s.dom.a_noun == "store" {
                format!(
                    "{} {}",
                    pick(r, NOUN),
                    pick(r, &["Market", "Corner", "Plaza", "Depot", "Express", "Central"])
                )
            } else {
                format!("{} {}", pick(r, FIRST), pick(r, LAST))
            };
            if !names.insert(name.clone()) {
                // The name space can be smaller than `n_a` (e.g. NOUN x 6 store names): stop
                // after a bounded number of collisions instead of spinning forever.
                collisions += 1;
                if names.len() > 400 || collisions > 2_000 {
                    break;
                }
                continue;
            }
            let ci = r.random_range(0..s.cities.len());
            let city: Value =
                if s.c.is_some() { json!(ci as i64 + 1) } else { json!(s.cities[ci]) };
            let city_sql: rusqlite::types::Value = match city {
                Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap_or(1)),
                _ => rusqlite::types::Value::Text(s.cities[ci].to_owned()),
            };
            let seg = pick(r, &s.segs);
            st.execute(rusqlite::params![
                a_base + i as i64,
                name,
                city_sql,
                seg,
                r.random_range(2005..=2024)
            ])
            .map_err(sqlite_err)?;
            i += 1;
        }
        tables.push((s.a.to_owned(), i as i64));
    }
    let n_a = tables.last().map_or(0, |t| t.1);
    let n_b = r.random_range(25..=60i64);
    let b_base = i64::from(r.random_range(1..=9)) * 1000;
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, name, {}, {}) VALUES (?1, ?2, ?3, ?4)",
                s.b, s.b_cat, s.b_price
            ))
            .map_err(sqlite_err)?;
        let mut bnames = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < n_b {
            let name = format!("{} {} {}", pick(r, ADJ), pick(r, NOUN), r.random_range(1..=99));
            if !bnames.insert(name.clone()) {
                continue;
            }
            let cents: i64 = r.random_range(199..=49_999);
            st.execute(rusqlite::params![b_base + i, name, pick(r, &s.cats), cents as f64 / 100.0])
                .map_err(sqlite_err)?;
            i += 1;
        }
        tables.push((s.b.to_owned(), n_b));
    }
    let n_f = r.random_range(600..=1800i64);
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {} (id, {}, {}, {}, {}, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                s.f, s.f_a, s.f_b, s.f_qty, s.f_status, s.f_month
            ))
            .map_err(sqlite_err)?;
        for i in 0..n_f {
            let status = match r.random_range(0..100) {
                0..=69 => s.statuses[0],
                70..=84 => s.statuses[1],
                _ => s.statuses[2],
            };
            st.execute(rusqlite::params![
                i + 1,
                a_base + r.random_range(0..n_a),
                b_base + r.random_range(0..n_b),
                r.random_range(1..=12i64),
                status,
                s.month(r.random_range(1..=12)),
            ])
            .map_err(sqlite_err)?;
        }
        tables.push((s.f.to_owned(), n_f));
    }
    for &di in &distractors {
        let (name, cols) = DISTRACTORS[di];
        let n = r.random_range(15..=80i64);
        let placeholders: Vec<String> = (0..=cols.len()).map(|i| format!("?{}", i + 1)).collect();
        let colnames: Vec<&str> = cols.iter().map(|c| c.0).collect();
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {name} (id, {}) VALUES ({})",
                colnames.join(", "),
                placeholders.join(", ")
            ))
            .map_err(sqlite_err)?;
        for i in 0..n {
            let mut vals: Vec<rusqlite::types::Value> =
                vec![rusqlite::types::Value::Integer(i + 1)];
            for (c, t) in cols {
                vals.push(match *t {
                    "INTEGER" => rusqlite::types::Value::Integer(r.random_range(0..=100)),
                    "REAL" => {
                        rusqlite::types::Value::Real(f64::from(r.random_range(0..=50_000)) / 100.0)
                    }
                    _ if c.ends_with("month") => {
                        rusqlite::types::Value::Text(s.month(r.random_range(1..=12)))
                    }
                    _ => {
                        rusqlite::types::Value::Text(format!("{} {}", pick(r, ADJ), pick(r, NOUN)))
                    }
                });
            }
            st.execute(params_from_iter(vals)).map_err(sqlite_err)?;
        }
        tables.push((name.to_owned(), n));
    }
    tx.commit().map_err(sqlite_err)?;

    let descs = describe_all(&conn, &tables).map_err(sqlite_err)?;
    // From here on the connection is read-only for everyone, the verifier included.
    conn.execute_batch("PRAGMA query_only = ON;").map_err(sqlite_err)?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name } => {
            let f = function_name.to_ascii_lowercase();
            let nondeterministic = matches!(
                f.as_str(),
                "random"
                    | "randomblob"
                    | "load_extension"
                    | "date"
                    | "time"
                    | "datetime"
                    | "julianday"
                    | "unixepoch"
                    | "strftime"
                    | "timediff"
                    | "current_date"
                    | "current_time"
                    | "current_timestamp"
                    | "changes"
                    | "last_insert_rowid"
                    | "total_changes"
                    | "sqlite_offset"
            );
            if nondeterministic { Authorization::Deny } else { Authorization::Allow }
        }
        _ => Authorization::Deny,
    }));
    let steps = Arc::new(AtomicU32::new(0));
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let tripped = Arc::new(AtomicU8::new(0));
    let (counter, until, why) = (steps.clone(), deadline.clone(), tripped.clone());
    conn.progress_handler(
        1000,
        Some(move || {
            if counter.fetch_add(1, Ordering::Relaxed) >= STEP_BUDGET {
                why.store(1, Ordering::Relaxed);
                return true;
            }
            if nanos_since_base() > until.load(Ordering::Relaxed) {
                why.store(2, Ordering::Relaxed);
                return true;
            }
            false
        }),
    );
    Ok(Db { conn, steps, deadline, tripped, tables, descs })
}

impl SqlInstance {
    pub(super) fn describe(&self, table: &str) -> ToolResult {
        let db = self.lock();
        match db.descs.iter().find(|(t, _)| t == table) {
            Some((_, d)) => ToolResult::read(d),
            None => {
                let names: Vec<&str> = db.tables.iter().map(|t| t.0.as_str()).collect();
                ToolResult::error(format!("no such table: {table:?}; tables: {}", names.join(", ")))
            }
        }
    }
}

/// `describe_table` output of every table, read before the authorizer locks the connection.
pub(super) fn describe_all(
    conn: &Connection,
    tables: &[(String, i64)],
) -> rusqlite::Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (table, rows) in tables {
        let mut st = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
        let mut cols = st
            .query_map([table], |row| {
                Ok(json!({
                    "name": row.get::<_, String>(0)?,
                    "type": row.get::<_, String>(1)?,
                    "primary_key": row.get::<_, i64>(2)? > 0,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut st = conn.prepare("SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?1)")?;
        let fks = st
            .query_map([table], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for c in &mut cols {
            let n = c.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if let Some((_, t)) = fks.iter().find(|(from, _)| *from == n)
                && let Some(o) = c.as_object_mut()
            {
                o.insert("references".into(), json!(format!("{t}.id")));
            }
        }
        out.push((table.clone(), json!({ "table": table, "columns": cols, "row_count": rows })));
    }
    Ok(out)
}
