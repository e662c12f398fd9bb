//! `agentgen`: the command-line front end. Parses flags into validated configs, wires concrete
//! types (the candle engine behind the pipeline's `Policy`), runs. No business logic lives here.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};

mod commands;

/// mimalloc instead of the system allocator: the pipeline allocates many short-lived strings
/// on several threads, where glibc malloc both cost ~30 % of a `generate` run and let peak RSS
/// creep up with the task count (per-thread arenas).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Manufacture verifiable agentic tool-use training data in the DeepSeek-V3.2 format.
#[derive(Debug, clap::Parser)]
#[command(name = "agentgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The V3.2 chat codec: encode, parse, tokenize, conformance vectors.
    #[command(subcommand)]
    Codec(commands::codec::Command),
    /// The local DeepSeek-V3.2 engine: golden checks, random checkpoints, generation.
    #[command(subcommand)]
    Model(commands::model::Command),
    /// Whole-system benchmarks.
    #[command(subcommand)]
    Bench(commands::bench::Command),
    /// Environment families: list, sample tasks, soundness checks.
    #[command(subcommand)]
    Envs(commands::envs::Command),
    /// Roll out tasks with a policy, validate, and write a Parquet dataset.
    Generate(commands::generate::Args),
    /// Check datasets (Parquet, JSONL or raw completions) against the V3.2 format.
    Validate(commands::validate::Args),
    /// Summarise one or more dataset folders (and check shards are disjoint).
    Inspect(commands::inspect::Args),
    /// Check a sharded dataset in an object store is whole and write its `_SUCCESS`.
    Seal(commands::seal::Args),
    /// OpenAI-compatible HTTP server over the local engine.
    Serve(commands::serve::Args),
    /// A self-contained HTML report: statistics, charts and a trajectory viewer.
    Report(commands::report::Args),
    /// RL rollout worker: groups, logprobs, rewards, advantages.
    Rollout(commands::rollout::Args),
    /// Measure each package task's pass rate under a policy (K rollouts per task), for
    /// `--difficulty-band`.
    Calibrate(commands::calibrate::Args),
    /// Build envpkg packages with a model: a tool-use agent writes, checks and submits them.
    Synth(commands::synth::Args),
}

/// mimalloc returns freed memory to the OS 10 ms after it is freed. The engine frees and
/// re-allocates the same multi-megabyte activation buffers every layer, so each one came back as
/// fresh pages the kernel had to zero (~10 % of a 512-token prefill, 1.5x on its speed). A one
/// second delay keeps them for reuse and still gives memory back between jobs. It is set through
/// mimalloc's API (its environment is read before `main`); an explicit `MIMALLOC_PURGE_DELAY`
/// wins.
///
///
/// `validate` never purges: it decodes, checks and frees batches of a few MB in a steady cycle
/// on several threads, and purging made a fifth of its time the kernel zeroing pages it had
/// just given back (22,000 page faults on 9,500 rows; 2,000 without purging). Its working set
/// is a few batches, so keeping it costs tens of MB and stays flat in the row count. mimalloc
/// v3 reads its environment when the process loads, before `main`, so for `validate` the option
/// is set through its API.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        if std::env::args_os().nth(1).is_some_and(|c| c == "validate") {
            // SAFETY: a plain setter of mimalloc's option table, linked in by the `mimalloc`
            // crate; the option index is that of mimalloc v2.1 and v3 (`mimalloc.h`).
            unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
        } else {
            // Through the API: mimalloc v3 reads its environment when the process loads, so
            // setting `MIMALLOC_PURGE_DELAY` here (as this did before) never took effect.
            // SAFETY: as above.
            unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
        }
    }
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// mimalloc's `void mi_option_set(mi_option_t option, long value)`.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// candle asks for its thread count on every CPU matmul and, unless `RAYON_NUM_THREADS` is
/// set, derives it by reading `/proc/cpuinfo` each time (7 % of a tiny-model prefill). Setting
/// the variable once, to rayon's own default, removes that and changes no pool size.
///
/// candle also runs element-wise ops on a second, spinning thread pool of its own; the engine
/// already keeps the rayon pool busy with row blocks, so that pool only competed for the same
/// cores (its spin was ~7 % of a prefill profile). `CANDLE_NUM_THREADS=1` keeps element-wise
/// ops on the calling thread (512-token prefill ~10 % faster, decode unchanged). Either
/// variable set by the user wins.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // SAFETY: first statement of `main`, before any other thread exists, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// `println!` panics when stdout is a closed pipe (`agentgen codec parse | head -c10`): such
/// a reader has all it wants, so exit quietly (0) instead of printing a panic and exiting 101.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    pin_thread_count();
    tune_allocator();
    quiet_on_closed_stdout();
    let cli = parse_cli();
    let result = match cli.command {
        Command::Codec(c) => commands::codec::run(c),
        Command::Model(c) => commands::model::run(c),
        Command::Bench(c) => commands::bench::run(c),
        Command::Envs(c) => commands::envs::run(c),
        Command::Generate(a) => commands::generate::run(a),
        Command::Validate(a) => commands::validate::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Seal(a) => commands::seal::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::Rollout(a) => commands::rollout::run(a),
        Command::Calibrate(a) => commands::calibrate::run(a),
        Command::Synth(a) => commands::synth::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The command line, with a `--config FILE`'s flags spliced in (`commands::config`). A value
/// a parser refuses (`--tasks -1`, `--top-p 7`) is one line on stderr, exit 2; other clap
/// errors (and `--help`) print as clap prints them.
fn parse_cli() -> Cli {
    use clap::error::ErrorKind;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let matches = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        // A required flag may be in the `--config` file: look for the file without requiring.
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            let relaxed = cmd.clone().mut_subcommands(|s| s.mut_args(|a| a.required(false)));
            relaxed.try_get_matches_from(&argv).unwrap_or_else(|_| clap_exit(e, None))
        }
        Err(e) => clap_exit(e, None),
    };
    let (spliced, file) = match commands::config::splice(&cmd, &matches, argv.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    match cmd.clone().try_get_matches_from(&spliced) {
        Ok(m) => Cli::from_arg_matches(&m).unwrap_or_else(|e| clap_exit(e, None)),
        Err(e) => match (file, cmd.try_get_matches_from(&argv)) {
            // The command line alone parses, so the error is in a value from the file.
            (Some(f), Ok(_)) => clap_exit(e, Some(&format!("--config {}: ", f.display()))),
            _ => clap_exit(e, None),
        },
    }
}

/// Print a clap error and exit: a refused value as one line, the rest as clap renders it.
fn clap_exit(err: clap::Error, context: Option<&str>) -> ! {
    use clap::error::ErrorKind;
    if err.kind() == ErrorKind::ValueValidation || context.is_some() {
        let text = err.render().to_string();
        let line = text.lines().next().unwrap_or_default();
        let line = line.strip_prefix("error: ").unwrap_or(line);
        eprintln!("error: {}{line}", context.unwrap_or_default());
        std::process::exit(2);
    }
    err.exit()
}

/// The exit code an error means: the pipeline's own (3 for a busy folder or a run stopped by
/// a limit), else 2 (usage or unreadable input).
fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<agentgen_pipeline::Error>())
        .map_or(2, agentgen_pipeline::Error::exit_code)
}

/// A closed stdout (`agentgen ... | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
