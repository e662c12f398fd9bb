//! `--config FILE`: a TOML file whose keys are the command's long flags. The file is turned
//! into flags (`top_p = 0.9` becomes `--top-p=0.9`) that are parsed by the same clap parser as
//! the command line, so the flags and the file share one struct, one set of value parsers and
//! range checks, and every flag has its key. Keys may be snake or kebab case; a flag given on
//! the command line wins over the file; a switch is `true` (`false`: left off); a list flag
//! takes an array (or one comma-separated string), a repeatable one an array.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;

/// The command line with the `--config` file's flags inserted after the subcommand name, the
/// ones the command line sets itself left out, and the file. `matches` is the parse of `argv`
/// alone; `argv` is returned unchanged when the subcommand takes no `--config` or none was
/// given.
pub fn splice(
    cli: &clap::Command,
    matches: &ArgMatches,
    argv: Vec<OsString>,
) -> anyhow::Result<(Vec<OsString>, Option<PathBuf>)> {
    let Some((name, sub)) = matches.subcommand() else { return Ok((argv, None)) };
    let Ok(Some(path)) = sub.try_get_one::<PathBuf>("config") else { return Ok((argv, None)) };
    let Some(cmd) = cli.find_subcommand(name) else { return Ok((argv, None)) };
    let flags = file_flags(cmd, sub, path)?;
    // The subcommand is the first argument (the top level has no flags of its own).
    let at = argv.iter().position(|a| a.to_str() == Some(name)).map_or(argv.len(), |i| i + 1);
    let mut out = argv;
    out.splice(at..at, flags.into_iter().map(OsString::from));
    Ok((out, Some(path.clone())))
}

/// The flags `path` sets for `cmd`, less those `given` has from the command line.
fn file_flags(cmd: &clap::Command, given: &ArgMatches, path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let file = path.display();
    let mut seen = std::collections::BTreeMap::new();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| {
                !a.is_positional()
                    && (a.get_long() == Some(&long)
                        || a.get_all_aliases().is_some_and(|al| al.contains(&long.as_str())))
            })
            .filter(|a| a.get_id() != "config" && a.get_id() != "help")
            .with_context(|| {
                format!(
                    "{file}: unknown key `{key}` (the keys are the long flags of `agentgen {}`)",
                    cmd.get_name()
                )
            })?;
        let long = arg.get_long().unwrap_or(&long).to_owned();
        if let Some(other) = seen.insert(long.clone(), key.clone()) {
            bail!("{file}: `{other}` and `{key}` are the same flag --{long}");
        }
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = format!("--{long}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => flags.push(flag),
                toml::Value::Boolean(false) => {}
                _ => bail!("{file}: `{key}` is a switch: true or false"),
            }
            continue;
        }
        let one = |v: &toml::Value| -> anyhow::Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => bail!("{file}: `{key}` wants a string, number or boolean"),
            })
        };
        match value {
            toml::Value::Array(items) => {
                if let Some(d) = arg.get_value_delimiter() {
                    let parts = items.iter().map(&one).collect::<anyhow::Result<Vec<_>>>()?;
                    flags.push(format!("{flag}={}", parts.join(&d.to_string())));
                } else if matches!(arg.get_action(), clap::ArgAction::Append) {
                    for item in items {
                        flags.push(format!("{flag}={}", one(item)?));
                    }
                } else {
                    bail!("{file}: `{key}` takes one value, not a list");
                }
            }
            v => flags.push(format!("{flag}={}", one(v)?)),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, Command};

    use super::*;

    fn cli() -> Command {
        let sub = Command::new("go")
            .arg(Arg::new("top_p").long("top-p"))
            .arg(Arg::new("families").long("families").value_delimiter(','))
            .arg(Arg::new("headers").long("header").action(ArgAction::Append))
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config").value_parser(clap::value_parser!(PathBuf)));
        Command::new("x").subcommand(sub)
    }

    /// The flags a config file's text becomes, with `line` given on the command line.
    fn flags(text: &str, line: &[&str]) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text)?;
        let mut argv = vec!["x", "go", "--config", path.to_str().unwrap_or_default()];
        argv.extend_from_slice(line);
        let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
        let cmd = cli();
        let matches = cmd.clone().try_get_matches_from(&argv)?;
        let (out, file) = splice(&cmd, &matches, argv.clone())?;
        assert_eq!(file.as_deref(), Some(path.as_path()));
        let mut got: Vec<String> =
            out[2..out.len() - argv.len() + 2].iter().map(|a| a.to_string_lossy().into()).collect();
        got.sort();
        Ok(got)
    }

    #[test]
    fn keys_become_flags() -> anyhow::Result<()> {
        let got = flags(
            "top_p = 0.5\nfamilies = [\"a\", \"b\"]\nheader = [\"K: V\", \"L: W\"]\nquiet = true\n",
            &[],
        )?;
        assert_eq!(
            got,
            ["--families=a,b", "--header=K: V", "--header=L: W", "--quiet", "--top-p=0.5"]
        );
        assert_eq!(flags("quiet = false\ntop-p = 1\n", &[])?, ["--top-p=1"]);
        Ok(())
    }

    #[test]
    fn the_command_line_wins_and_bad_keys_are_refused() -> anyhow::Result<()> {
        assert_eq!(flags("top_p = 0.5\nquiet = true\n", &["--top-p", "0.9"])?, ["--quiet"]);
        let err = |text: &str| flags(text, &[]).expect_err("refused").to_string();
        assert!(err("nope = 1\n").contains("unknown key `nope`"));
        assert!(err("config = \"x\"\n").contains("unknown key `config`"));
        assert!(err("top_p = 1\ntop-p = 2\n").contains("are the same flag --top-p"));
        assert!(err("quiet = 1\n").contains("is a switch"));
        assert!(err("top_p = [1, 2]\n").contains("takes one value"));
        Ok(())
    }
}
