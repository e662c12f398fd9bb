//! Write-then-read round trips, crash safety, typed errors on bad files, and the conversation
//! reader on our files and on foreign Parquet.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use agentgen_codec::{Message, Role, ToolCall};
use agentgen_datasets::{
    ConversationReader, DatasetWriter, Error, Manifest, RowReader, SCHEMA_VERSION,
    SCHEMA_VERSION_KEY, SampleRow, Split, Verdict, WriterOptions, file_info, finished_sample_ids,
    list_parts, list_temp_files, read_rows, scan_dataset, schema, write_dataset_card,
};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;

fn row(i: usize, verdict: Verdict) -> SampleRow {
    SampleRow {
        sample_id: format!("s{i:04}"),
        task_id: format!("calc@1/{i}/0"),
        group_id: format!("g{}", i / 2),
        run_id: "run-1".into(),
        family: if i.is_multiple_of(3) { "calc".into() } else { "kv".into() },
        instance_seed: i as u64 * 7,
        task_seed: u64::MAX - i as u64,
        sample_index: (i % 2) as u32,
        difficulty: (i % 5) as u8,
        thinking_mode: "thinking".into(),
        tools: r#"[{"type":"function","function":{"name":"add","parameters":{}}}]"#.into(),
        messages: vec![
            Message::system("sys"),
            Message::user(format!("question {i} — ünïcödé ✓")),
            Message::assistant(
                Some("thinking…".into()),
                "",
                vec![ToolCall::new("add", r#"{"a": 1, "b": 2}"#), ToolCall::new("add", "{}")],
            ),
            Message::tool("3", None),
            Message::assistant(None, "done", vec![]),
        ],
        text: format!("<｜begin▁of▁sentence｜>text {i}"),
        token_ids: (0..(i as u32 % 50)).collect(),
        loss_mask: (0..(i % 50)).map(|j| (j % 2) as u8).collect(),
        logprobs: if i.is_multiple_of(2) {
            None
        } else {
            Some((0..(i % 50)).map(|j| (j % 3 != 0).then_some(-(j as f32) / 10.0)).collect())
        },
        reward: i as f32 / 10.0,
        advantage: i.is_multiple_of(4).then_some(0.5),
        passed: !i.is_multiple_of(3),
        checks: "[]".into(),
        verdict,
        turns: 2,
        tool_calls: 2,
        finish_reason: "stop".into(),
        policy: "reference".into(),
        model: (i % 2 == 1).then(|| "tiny".into()),
        sampling: r#"{"temperature":0}"#.into(),
        warnings: if i.is_multiple_of(5) { vec!["tokens.noncanonical".into()] } else { vec![] },
        timings_ms: r#"{"rollout":1}"#.into(),
        token_source: "reference".into(),
        episode_id: String::new(),
        turn_index: 0,
        turns_total: 1,
        env_package: None,
        env_package_sha256: None,
        env_python: None,
    }
}

fn rows(n: usize) -> Vec<SampleRow> {
    (0..n)
        .map(|i| {
            let v = if i % 4 == 3 {
                Verdict::Rejected { code: "outcome.failed".into(), detail: format!("row {i}") }
            } else {
                Verdict::Accepted
            };
            row(i, v)
        })
        .collect()
}

fn opts(rows_per_file: usize, row_group_rows: usize) -> WriterOptions {
    WriterOptions { rows_per_file, row_group_rows, ..WriterOptions::default() }
}

fn write_all(dir: &Path, rows: &[SampleRow], opts: WriterOptions) -> agentgen_datasets::Result<()> {
    let mut w = DatasetWriter::try_new(dir, opts)?;
    for r in rows {
        w.write(r.clone())?;
    }
    w.finish()?;
    Ok(())
}

/// All rows of `split` under `dir`, in part order.
fn read_split(dir: &Path, split: Split) -> Vec<SampleRow> {
    let mut out = Vec::new();
    for p in list_parts(dir).unwrap() {
        if p.split == split {
            out.extend(read_rows(&p.path).unwrap());
        }
    }
    out
}

#[test]
fn round_trip_across_row_groups_and_parts() {
    let all = rows(103);
    let want_train: Vec<_> = all.iter().filter(|r| r.split() == Split::Train).cloned().collect();
    let want_rejected: Vec<_> =
        all.iter().filter(|r| r.split() == Split::Rejected).cloned().collect();
    for (per_file, per_group) in [(1000, 1000), (10, 3), (7, 7), (1, 1), (50, 16)] {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &all, opts(per_file, per_group)).unwrap();
        assert_eq!(read_split(dir.path(), Split::Train), want_train, "{per_file}/{per_group}");
        assert_eq!(read_split(dir.path(), Split::Rejected), want_rejected);
        let parts = list_parts(dir.path()).unwrap();
        let expect_parts =
            want_train.len().div_ceil(per_file) + want_rejected.len().div_ceil(per_file);
        assert_eq!(parts.len(), expect_parts);
        for p in &parts {
            let info = file_info(&p.path).unwrap();
            assert!(info.rows as usize <= per_file);
            assert!(info.row_groups >= (info.rows as usize).div_ceil(per_group));
        }
        assert!(list_temp_files(dir.path()).unwrap().is_empty());
    }
}

#[test]
fn schema_version_in_metadata() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &rows(4), WriterOptions::default()).unwrap();
    let p = &list_parts(dir.path()).unwrap()[0];
    assert_eq!(file_info(&p.path).unwrap().schema_version, Some(SCHEMA_VERSION.to_string()));
    assert_eq!(schema().metadata().get(SCHEMA_VERSION_KEY), Some(&SCHEMA_VERSION.to_string()));
    // And pyarrow/other readers see the exact Arrow schema (names, types).
    let file = fs::File::open(&p.path).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(b.schema().fields(), schema().fields());
    let kv = b.metadata().file_metadata().key_value_metadata().unwrap();
    let v = SCHEMA_VERSION.to_string();
    assert!(kv.iter().any(|k| k.key == SCHEMA_VERSION_KEY && k.value.as_deref() == Some(&*v)));
}

#[test]
fn version_1_files_still_read() {
    // A version 1 file: today's columns less the v2 ones, version "1" in the metadata.
    let dir = tempfile::tempdir().unwrap();
    let mut rs = rows(3);
    rs[1].policy = "local".into();
    rs[2].policy = "http".into();
    let batch = agentgen_datasets::rows_to_batch(&rs).unwrap();
    let v2_only = [agentgen_datasets::col::TOKEN_SOURCE];
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !v2_only.contains(&batch.schema().field(i).name().as_str()))
        .collect();
    let v1 = batch.project(&keep).unwrap();
    let meta = std::collections::HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), "1".to_owned())]);
    let v1_schema = Arc::new(v1.schema().as_ref().clone().with_metadata(meta));
    let v1 = RecordBatch::try_new(v1_schema.clone(), v1.columns().to_vec()).unwrap();
    let path = dir.path().join("v1.parquet");
    let mut w = ArrowWriter::try_new(fs::File::create(&path).unwrap(), v1_schema, None).unwrap();
    w.write(&v1).unwrap();
    w.close().unwrap();
    let back = read_rows(&path).unwrap();
    let sources: Vec<&str> = back.iter().map(|r| r.token_source.as_str()).collect();
    let want: Vec<&str> = ["reference", "sampled", "retokenized"].into();
    assert_eq!(sources, want);
    for (a, b) in back.iter().zip(&rs) {
        assert_eq!((&a.messages, &a.text, &a.policy), (&b.messages, &b.text, &b.policy));
    }
    // Version 3 is refused.
    let meta = std::collections::HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), "3".to_owned())]);
    let v3_schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    let path3 = dir.path().join("v3.parquet");
    let mut w =
        ArrowWriter::try_new(fs::File::create(&path3).unwrap(), v3_schema.clone(), None).unwrap();
    w.write(&RecordBatch::try_new(v3_schema, batch.columns().to_vec()).unwrap()).unwrap();
    w.close().unwrap();
    assert!(matches!(read_rows(&path3), Err(Error::SchemaVersion { .. })));
}

#[test]
fn wrong_schema_version_is_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.parquet");
    write_foreign(&path, false);
    assert!(matches!(read_rows(&path), Err(Error::SchemaVersion { found: None, .. })));
}

#[test]
fn unfinished_parts_are_invisible_and_resume_continues_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(40);
    write_all(dir.path(), &all[..20], opts(4, 2)).unwrap();
    let finished = list_parts(dir.path()).unwrap();

    // A second writer that is "killed" (dropped without finish) leaves only temp files.
    let mut w = DatasetWriter::try_new(dir.path(), opts(1000, 2)).unwrap();
    for r in &all[20..] {
        w.write(r.clone()).unwrap();
    }
    drop(w);
    assert!(!list_temp_files(dir.path()).unwrap().is_empty());
    assert_eq!(list_parts(dir.path()).unwrap(), finished);
    let ids = finished_sample_ids(dir.path()).unwrap();
    let want: std::collections::HashSet<_> =
        all[..20].iter().map(|r| r.sample_id.clone()).collect();
    assert_eq!(ids, want);
    assert!(list_temp_files(dir.path()).unwrap().is_empty(), "stale temp files deleted");

    // Resume: the rest goes to new part numbers; nothing is overwritten.
    write_all(dir.path(), &all[20..], opts(4, 2)).unwrap();
    let parts = list_parts(dir.path()).unwrap();
    for f in &finished {
        assert!(parts.contains(f));
    }
    let max_train_before =
        finished.iter().filter(|p| p.split == Split::Train).map(|p| p.part).max().unwrap();
    assert!(parts.iter().any(|p| p.split == Split::Train && p.part == max_train_before + 1));
    let mut got: Vec<_> =
        [Split::Train, Split::Rejected].iter().flat_map(|s| read_split(dir.path(), *s)).collect();
    got.sort_by(|a, b| a.sample_id.cmp(&b.sample_id));
    assert_eq!(got, all);
}

#[test]
fn shards_share_a_folder_without_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(12);
    for shard in 0..3u32 {
        let mine: Vec<_> = all.iter().skip(shard as usize).step_by(3).cloned().collect();
        let o = WriterOptions { shard_index: shard, shard_count: 3, ..opts(2, 2) };
        write_all(dir.path(), &mine, o).unwrap();
    }
    let parts = list_parts(dir.path()).unwrap();
    assert_eq!(parts.iter().map(|p| p.shard).collect::<std::collections::BTreeSet<_>>().len(), 3);
    assert_eq!(finished_sample_ids(dir.path()).unwrap().len(), 12);
    assert!(
        DatasetWriter::try_new(
            dir.path(),
            WriterOptions { shard_index: 3, shard_count: 3, ..opts(2, 2) }
        )
        .is_err()
    );
}

#[test]
fn truncated_and_garbage_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &rows(50), opts(1000, 5)).unwrap();
    let good = list_parts(dir.path()).unwrap().remove(0).path;
    let bytes = fs::read(&good).unwrap();
    let bad = dir.path().join("bad.parquet");
    for cut in [0, 3, 4, 8, bytes.len() / 3, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
        fs::write(&bad, &bytes[..cut]).unwrap();
        assert!(read_rows(&bad).is_err(), "cut at {cut}");
        assert!(ConversationReader::try_new(&bad).is_err(), "cut at {cut}");
    }
    // Corrupt bytes in the middle (footer intact): an error or rows, never a panic.
    let mut flipped = bytes.clone();
    for b in flipped.iter_mut().skip(8).take(bytes.len() / 2).step_by(7) {
        *b ^= 0x5a;
    }
    fs::write(&bad, &flipped).unwrap();
    let _ = read_rows(&bad);
    if let Ok(r) = ConversationReader::try_new(&bad) {
        for _ in r {}
    }
    fs::write(&bad, b"not parquet at all, just text\n").unwrap();
    assert!(matches!(read_rows(&bad), Err(Error::Parquet { .. } | Error::Corrupt { .. })));
    assert!(matches!(read_rows(&dir.path().join("missing.parquet")), Err(Error::Io { .. })));
}

#[test]
fn conversation_reader_on_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(9);
    write_all(dir.path(), &all, WriterOptions::default()).unwrap();
    let train: Vec<_> = all.iter().filter(|r| r.split() == Split::Train).collect();
    let part =
        list_parts(dir.path()).unwrap().into_iter().find(|p| p.split == Split::Train).unwrap();
    let mut n = 0;
    for (i, value) in ConversationReader::try_new(&part.path).unwrap() {
        let value = value.unwrap();
        let messages: Vec<Message> = serde_json::from_value(value["messages"].clone()).unwrap();
        assert_eq!(messages, train[i].messages);
        let tools: serde_json::Value = serde_json::from_str(&train[i].tools).unwrap();
        assert_eq!(value["tools"], tools);
        n += 1;
    }
    assert_eq!(n, train.len());
}

/// A foreign file: `messages` as utf8 JSON, `tools` optional, other columns around.
fn write_foreign(path: &Path, with_tools: bool) {
    let messages = [
        r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"yo","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]"#,
        "this is not json",
        r#"[{"role":"system","content":"s"}]"#,
    ];
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("messages", DataType::Utf8, true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3])),
        Arc::new(StringArray::from(messages.to_vec())),
    ];
    if with_tools {
        fields.push(Field::new("tools", DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(vec![
            Some("[]"),
            None,
            Some(r#"[{"type":"function"}]"#),
        ])));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn conversation_reader_on_foreign_parquet() {
    let dir = tempfile::tempdir().unwrap();
    for with_tools in [false, true] {
        let path = dir.path().join(format!("foreign-{with_tools}.parquet"));
        write_foreign(&path, with_tools);
        let got: Vec<_> = ConversationReader::try_new(&path).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 0);
        let first = got[0].1.as_ref().unwrap();
        let m: Vec<Message> = serde_json::from_value(first["messages"].clone()).unwrap();
        assert_eq!(m[1].role, Role::Assistant);
        assert_eq!(m[1].tool_calls[0].name, "f");
        assert_eq!(first.get("tools").is_some(), with_tools);
        assert!(matches!(&got[1].1, Err(e) if e.is_row_error()));
        assert!(got[1].1.as_ref().unwrap_err().to_string().contains("row 1"));
        assert!(got[2].1.is_ok());
        assert_eq!(got[2].1.as_ref().unwrap().get("tools").is_some(), with_tools);
    }
    // No messages column: typed error.
    let path = dir.path().join("nomsg.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let mut w = ArrowWriter::try_new(fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    assert!(matches!(ConversationReader::try_new(&path), Err(Error::MissingColumn { .. })));
}

#[test]
fn streaming_reader_matches_read_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &rows(3000), opts(100_000, 1000)).unwrap();
    let p = list_parts(dir.path()).unwrap().into_iter().find(|p| p.split == Split::Train).unwrap();
    let r = RowReader::try_new(&p.path).unwrap();
    assert_eq!(r.num_rows(), 2250);
    let streamed: Vec<_> = r.map(Result::unwrap).collect();
    assert_eq!(streamed, read_rows(&p.path).unwrap());
}

#[test]
fn stats_manifest_and_card() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(20);
    write_all(dir.path(), &all, opts(6, 3)).unwrap();
    let stats = scan_dataset(dir.path()).unwrap();
    assert_eq!(stats.counts.accepted, 15);
    assert_eq!(stats.counts.rejected, 5);
    assert_eq!(stats.counts.per_rejection_code["outcome.failed"], 5);
    assert_eq!(stats.counts.per_family.values().map(|c| c.accepted + c.rejected).sum::<u64>(), 20);
    assert_eq!(stats.tokens.total, all.iter().map(|r| r.token_ids.len() as u64).sum::<u64>());
    assert_eq!(stats.files.iter().map(|f| f.rows).sum::<u64>(), 20);

    let mut m = Manifest::new();
    m.run_id = "run-1".into();
    m.counts = stats.counts.clone();
    m.tokens = stats.tokens;
    m.files = stats.files.clone();
    m.environment_versions.insert("calc".into(), "1".into());
    m.write(dir.path()).unwrap();
    assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    write_dataset_card(dir.path(), &m, "agentgen generate --tasks 20").unwrap();
    let card = fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(card.starts_with("---\nconfigs:"));
    assert!(card.contains("path: data/train-*.parquet"));
    assert!(card.contains("path: data/rejected-*.parquet"));
    assert!(card.contains("| `outcome.failed` | 5 |"));
    assert!(card.contains("| calc | 1 |"));
    assert!(card.contains("agentgen generate --tasks 20"));
    assert!(card.contains("`rejection_code`"));
}

// ---------------------------------------------------------------------------------------------
// proptest: generated rows with unicode, nulls and empty lists survive write + read.

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(".{0,12}")
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop::sample::select(vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Developer,
        ]),
        opt_text(),
        opt_text(),
        prop::collection::vec((".{0,6}", ".{0,10}"), 0..3),
    )
        .prop_map(|(role, content, reasoning, calls)| {
            let mut m = Message::new(role, "");
            m.content = content;
            m.reasoning_content = reasoning;
            m.tool_calls = calls.into_iter().map(|(n, a)| ToolCall::new(n, a)).collect();
            m
        })
}

fn sample_row() -> impl Strategy<Value = SampleRow> {
    let ids = (".{0,8}", ".{0,8}", any::<u64>(), any::<u64>(), any::<u32>(), any::<u8>());
    let seqs = (
        prop::collection::vec(any::<u32>(), 0..20),
        prop::collection::vec(0u8..=1, 0..20),
        prop::option::of(prop::collection::vec(prop::option::of(-100f32..0.0), 0..20)),
    );
    let scalars = (
        -1f32..1.0,
        prop::option::of(-1f32..1.0),
        any::<bool>(),
        prop::option::of((".{0,8}", ".{0,8}")),
        prop::option::of(".{0,8}"),
        prop::collection::vec(".{0,8}", 0..3),
    );
    (ids, prop::collection::vec(message(), 0..5), ".{0,30}", seqs, scalars).prop_map(
        |((sid, family, iseed, tseed, idx, diff), messages, text, (tok, mask, lp), sc)| {
            let (reward, advantage, passed, rej, model, warnings) = sc;
            let verdict = match rej {
                None => Verdict::Accepted,
                Some((code, detail)) => Verdict::Rejected { code, detail },
            };
            SampleRow {
                sample_id: sid,
                task_id: "t".into(),
                group_id: String::new(),
                run_id: "r".into(),
                family,
                instance_seed: iseed,
                task_seed: tseed,
                sample_index: idx,
                difficulty: diff,
                thinking_mode: "chat".into(),
                tools: "[]".into(),
                messages,
                text,
                token_ids: tok,
                loss_mask: mask,
                logprobs: lp,
                reward,
                advantage,
                passed,
                checks: String::new(),
                verdict,
                turns: 0,
                tool_calls: 0,
                finish_reason: "stop".into(),
                policy: "reference".into(),
                model,
                sampling: "{}".into(),
                warnings,
                timings_ms: "{}".into(),
                token_source: "reference".into(),
                episode_id: String::new(),
                turn_index: 0,
                turns_total: 1,
                env_package: None,
                env_package_sha256: None,
                env_python: None,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_rows_round_trip(
        rows in prop::collection::vec(sample_row(), 0..40),
        per_file in 1usize..20,
        per_group in 1usize..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &rows, opts(per_file, per_group)).unwrap();
        for split in [Split::Train, Split::Rejected] {
            let want: Vec<_> = rows.iter().filter(|r| r.split() == split).cloned().collect();
            prop_assert_eq!(read_split(dir.path(), split), want);
        }
    }
}
