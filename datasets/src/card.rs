//! The generated Hugging Face dataset card (`README.md`).

use std::fmt::Write as _;
use std::path::Path;

use crate::manifest::{Manifest, write_atomic};
use crate::schema::COLUMNS;
use crate::{Result, SCHEMA_VERSION, Split};

/// File name of the dataset card.
pub const CARD_FILE: &str = "README.md";

/// Render the dataset card for `manifest`.
pub fn render_dataset_card(manifest: &Manifest, command_line: &str) -> String {
    let mut s = String::new();
    let splits: Vec<Split> = Split::ALL
        .into_iter()
        .rev()
        .filter(|sp| manifest.files.iter().any(|f| f.split == *sp) || manifest.files.is_empty())
        .collect();
    // YAML front matter: the HF datasets loader reads `configs` to find the splits.
    s.push_str("---\nconfigs:\n- config_name: default\n  data_files:\n");
    for sp in &splits {
        let _ = writeln!(s, "  - split: {sp}\n    path: data/{sp}-*.parquet");
    }
    s.push_str("tags:\n- agentic\n- tool-use\n- synthetic\n- deepseek-v3.2\n");
    s.push_str("task_categories:\n- text-generation\n---\n\n");

    let _ = writeln!(s, "# agentgen dataset `{}`\n", manifest.run_id);
    s.push_str(
        "Verifiable agentic tool-use trajectories in the DeepSeek-V3.2 chat format, rolled out \
         by `agentgen generate`, checked by staged validators and split into `train` (accepted) \
         and `rejected` (with a stable rejection code and detail).\n\n",
    );
    s.push_str("## Reproduce\n\n```sh\n");
    s.push_str(command_line);
    s.push_str("\n```\n\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| agentgen | {} |", manifest.agentgen_version);
    if let Some(rev) = &manifest.git_revision {
        let _ = writeln!(s, "| git revision | `{rev}` |");
    }
    let _ = writeln!(s, "| schema version | {} |", manifest.schema_version);
    let _ = writeln!(s, "| seed | {} |", manifest.seed);
    let _ = writeln!(s, "| shard | {} of {} |", manifest.shard_index, manifest.shard_count);
    let _ = writeln!(s, "| policy | {} |", manifest.policy);
    if let Some(model) = &manifest.model {
        let _ = writeln!(s, "| model | {model} |");
    }
    if let Some(t) = &manifest.tokenizer_sha256 {
        let _ = writeln!(s, "| tokenizer sha256 | `{t}` |");
    }
    if let Some(src) = &manifest.token_source {
        let _ = writeln!(s, "| token ids | {src} |");
    }
    if let Some(u) = &manifest.usage {
        let _ = writeln!(
            s,
            "| endpoint usage | {} prompt + {} completion = {} tokens |",
            u.prompt_tokens, u.completion_tokens, u.total_tokens
        );
    }
    s.push('\n');
    if manifest.token_source.as_deref() == Some("retokenized") {
        s.push_str(
            "**Token ids were re-tokenized, not sampled.** The policy returned text (a chat \
             endpoint's messages, or a completions endpoint's text); each row's `text` is the \
             V3.2 encoding of its conversation and `token_ids` are the tokenizer's ids of \
             `text`, which may differ from the ids the model sampled. Chat rows carry no \
             `logprobs`. Use these rows for supervised training rather than as on-policy RL \
             data; the `token_source` column says where each row's ids come from.\n\n",
        );
    }

    let c = &manifest.counts;
    s.push_str("## Counts\n\n| split | rows |\n|---|---:|\n");
    let _ = writeln!(s, "| train | {} |\n| rejected | {} |\n", c.accepted, c.rejected);
    let _ = writeln!(
        s,
        "Tokens: {} in all, {} in `train` ({} with loss mask 1).\n",
        manifest.tokens.total, manifest.tokens.train, manifest.tokens.train_loss
    );
    if !c.per_family.is_empty() {
        s.push_str(
            "### Per family\n\n| family | version | train | rejected |\n|---|---|---:|---:|\n",
        );
        for (family, n) in &c.per_family {
            let version = manifest.environment_versions.get(family).map_or("", String::as_str);
            let _ = writeln!(s, "| {family} | {version} | {} | {} |", n.accepted, n.rejected);
        }
        s.push('\n');
    }
    if !manifest.packages.is_empty() {
        s.push_str(
            "### Environment packages\n\nRows from a package carry `env_package`, \
             `env_package_sha256` and `env_python`; reproduce them only with this exact \
             package.\n\n| package | sha256 | python | path |\n|---|---|---|---|\n",
        );
        for p in &manifest.packages {
            let _ = writeln!(s, "| {} | `{}` | {} | {} |", p.label, p.sha256, p.python, p.path);
        }
        s.push('\n');
    }
    if !c.per_rejection_code.is_empty() {
        s.push_str("### Per rejection code\n\n| code | rows |\n|---|---:|\n");
        for (code, n) in &c.per_rejection_code {
            let _ = writeln!(s, "| `{code}` | {n} |");
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Schema (version {SCHEMA_VERSION})\n");
    s.push_str("| column | type | nullable | meaning |\n|---|---|---|---|\n");
    for col in COLUMNS {
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {} |",
            col.name,
            col.arrow_type.replace('|', "\\|"),
            if col.nullable { "yes" } else { "no" },
            col.description
        );
    }
    s.push_str(
        "\n`text` is the whole conversation (`messages`, with `tools` on the first system \
         message) encoded in the row's `thinking_mode` with BOS; `token_ids` decode to exactly \
         `text`. Full provenance is in `manifest.json`.\n",
    );
    s
}

/// Write the dataset card `dir/README.md` (atomically).
pub fn write_dataset_card(dir: &Path, manifest: &Manifest, command_line: &str) -> Result<()> {
    write_atomic(dir, CARD_FILE, render_dataset_card(manifest, command_line).as_bytes())
}
