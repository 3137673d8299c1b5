//! Go-style argument normalizer.
//!
//! Consul's CLI parses flags with Go's `flag` package, and scripts depend on its rules:
//! `-flag` and `--flag` are the same, values come as `-flag=value` or `-flag value`, a
//! boolean flag never consumes the next argument (`-dev=false` is how to pass a value),
//! and flag parsing stops at the first positional argument, so in
//! `kv put key -value-with-dash` the last word is data, not a flag.
//!
//! clap follows GNU conventions instead, so [`normalize`] rewrites argv into an
//! unambiguous GNU form before clap sees it: every flag becomes `--name=value` (booleans
//! `--name=true|false`), and everything from the first positional on goes after a `--`.
//! Which flags are booleans and which words are subcommands is read from the clap
//! `Command` itself, so the definitions stay in one place.

use std::ffi::{OsStr, OsString};

use clap::{Arg, ArgAction, Command};

/// Why argv could not be rewritten; worded like Go's `flag` package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
}

/// Parses a boolean the way Go's `strconv.ParseBool` does (used by every boolean flag).
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {s:?}")),
    }
}

/// Parses a `key=value` flag value (Consul's map-valued flags such as `-node-meta`,
/// `-meta`); the value may itself contain `=`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("Missing \"=\" value in argument: {s}")),
    }
}

/// Rewrites Go-style `argv` (including argv\[0\]) into the form clap parses with the same
/// meaning. `cmd` must have been built (`Command::build`) so argument arities are known.
pub fn normalize<I, T>(cmd: &Command, argv: I) -> Result<Vec<OsString>, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut it = args.into_iter();
    if let Some(argv0) = it.next() {
        out.push(argv0);
    }
    let rest: Vec<OsString> = it.collect();
    let mut i = 0;
    let mut cur = cmd;

    // Walk the subcommand path: Consul only accepts flags after the full command path.
    while cur.has_subcommands() && i < rest.len() {
        let Some(tok) = rest[i].to_str() else { break };
        if std::ptr::eq(cur, cmd) && matches!(tok, "-v" | "-version" | "--version") {
            // `consul -v` / `consul --version` print what `consul version` prints.
            if let Some(v) = cur.find_subcommand("version") {
                out.push(OsString::from("version"));
                cur = v;
                i += 1;
                continue;
            }
        }
        if matches!(tok, "-h" | "-help" | "--help") {
            out.push(OsString::from("--help"));
            i += 1;
            continue;
        }
        match cur.find_subcommand(tok) {
            Some(sub) => {
                out.push(rest[i].clone());
                cur = sub;
                i += 1;
            }
            None => {
                // Not a known command: let clap report it with its own message.
                out.extend(rest[i..].iter().cloned());
                return Ok(out);
            }
        }
    }

    while i < rest.len() {
        let raw = &rest[i];
        let Some(tok) = raw.to_str() else {
            // Flags are ASCII; a non-UTF-8 word can only be a positional.
            push_positionals(&mut out, &rest[i..]);
            return Ok(out);
        };
        if tok == "--" {
            push_positionals(&mut out, &rest[i + 1..]);
            return Ok(out);
        }
        if tok == "-" || !tok.starts_with('-') {
            push_positionals(&mut out, &rest[i..]);
            return Ok(out);
        }
        let body = tok.strip_prefix("--").unwrap_or(&tok[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ArgsError::BadSyntax(tok.to_owned()));
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        i += 1;
        if matches!(name, "h" | "help") {
            out.push(OsString::from("--help"));
            continue;
        }
        let Some(arg) = find_long(cur, name) else {
            // Unknown flag: hand it to clap, which names it in its error.
            out.push(OsString::from(format!("--{body}")));
            continue;
        };
        let long = arg.get_long().unwrap_or(name);
        if !takes_value(arg) {
            out.push(OsString::from(format!("--{body}")));
        } else if is_boolean(arg) {
            out.push(OsString::from(format!(
                "--{long}={}",
                value.unwrap_or("true")
            )));
        } else if let Some(v) = value {
            out.push(OsString::from(format!("--{long}={v}")));
        } else if i < rest.len() {
            // A value flag consumes the next word whatever it looks like (`-http-port -1`).
            let mut joined = OsString::from(format!("--{long}="));
            joined.push(&rest[i]);
            out.push(joined);
            i += 1;
        } else {
            // Missing value: clap reports it.
            out.push(OsString::from(format!("--{long}")));
        }
    }
    Ok(out)
}

fn push_positionals(out: &mut Vec<OsString>, rest: &[OsString]) {
    if rest.is_empty() {
        return;
    }
    out.push(OsString::from("--"));
    out.extend(rest.iter().cloned());
}

fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|al| al.iter().any(|x| OsStr::new(x) == OsStr::new(name)))
    })
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
        && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Boolean flags are declared with an optional value (`num_args(0..=1)`), so they work
/// bare (`-dev`) and with `=true|false`, but never eat the following word.
fn is_boolean(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|r| r.min_values() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn bool_arg(name: &'static str) -> Arg {
        Arg::new(name)
            .long(name)
            .action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_parser(go_bool)
    }

    fn test_cmd() -> Command {
        let mut c = Command::new("muster")
            .subcommand(Command::new("version"))
            .subcommand(
                Command::new("agent")
                    .arg(bool_arg("dev"))
                    .arg(Arg::new("node").long("node"))
                    .arg(Arg::new("datacenter").long("datacenter").alias("dc"))
                    .arg(
                        Arg::new("http-port")
                            .long("http-port")
                            .allow_negative_numbers(true),
                    )
                    .arg(
                        Arg::new("retry-join")
                            .long("retry-join")
                            .action(ArgAction::Append),
                    ),
            )
            .subcommand(
                Command::new("kv").subcommand(
                    Command::new("put")
                        .arg(bool_arg("cas"))
                        .arg(Arg::new("flags").long("flags"))
                        .arg(Arg::new("key"))
                        .arg(Arg::new("data")),
                ),
            );
        c.build();
        c
    }

    fn norm(args: &[&str]) -> Vec<String> {
        let cmd = test_cmd();
        let mut argv = vec!["muster"];
        argv.extend_from_slice(args);
        normalize(&cmd, argv)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_and_double_dash_are_the_same() {
        assert_eq!(norm(&["agent", "-dev"]), ["muster", "agent", "--dev=true"]);
        assert_eq!(norm(&["agent", "--dev"]), ["muster", "agent", "--dev=true"]);
    }

    #[test]
    fn boolean_with_explicit_value() {
        assert_eq!(
            norm(&["agent", "-dev=false"]),
            ["muster", "agent", "--dev=false"]
        );
        assert_eq!(
            norm(&["agent", "--dev=true"]),
            ["muster", "agent", "--dev=true"]
        );
    }

    #[test]
    fn value_flag_equals_and_separate_forms() {
        assert_eq!(norm(&["agent", "-node=a"]), ["muster", "agent", "--node=a"]);
        assert_eq!(
            norm(&["agent", "-node", "a"]),
            ["muster", "agent", "--node=a"]
        );
        assert_eq!(
            norm(&["agent", "--node", "a"]),
            ["muster", "agent", "--node=a"]
        );
        assert_eq!(norm(&["agent", "-node="]), ["muster", "agent", "--node="]);
    }

    #[test]
    fn value_flag_consumes_dash_words() {
        assert_eq!(
            norm(&["agent", "-http-port", "-1"]),
            ["muster", "agent", "--http-port=-1"]
        );
        assert_eq!(
            norm(&["agent", "-node", "-dev"]),
            ["muster", "agent", "--node=-dev"]
        );
    }

    #[test]
    fn boolean_does_not_consume_next_word() {
        assert_eq!(
            norm(&["kv", "put", "-cas", "key", "val"]),
            ["muster", "kv", "put", "--cas=true", "--", "key", "val"]
        );
    }

    #[test]
    fn parsing_stops_at_first_positional() {
        assert_eq!(
            norm(&["kv", "put", "key", "-value-with-dash"]),
            ["muster", "kv", "put", "--", "key", "-value-with-dash"]
        );
        assert_eq!(
            norm(&["kv", "put", "-flags", "42", "key", "-cas"]),
            ["muster", "kv", "put", "--flags=42", "--", "key", "-cas"]
        );
    }

    #[test]
    fn lone_dash_is_positional() {
        assert_eq!(
            norm(&["kv", "put", "key", "-"]),
            ["muster", "kv", "put", "--", "key", "-"]
        );
        assert_eq!(
            norm(&["kv", "put", "-"]),
            ["muster", "kv", "put", "--", "-"]
        );
    }

    #[test]
    fn double_dash_terminates_flags() {
        assert_eq!(
            norm(&["kv", "put", "--", "-k", "v"]),
            ["muster", "kv", "put", "--", "-k", "v"]
        );
        assert_eq!(norm(&["kv", "put", "--"]), ["muster", "kv", "put"]);
    }

    #[test]
    fn empty_positional_is_kept() {
        assert_eq!(norm(&["kv", "put", ""]), ["muster", "kv", "put", "--", ""]);
    }

    #[test]
    fn aliases_map_to_the_long_name() {
        assert_eq!(
            norm(&["agent", "-dc", "eu"]),
            ["muster", "agent", "--datacenter=eu"]
        );
        assert_eq!(
            norm(&["agent", "-dc=eu"]),
            ["muster", "agent", "--datacenter=eu"]
        );
    }

    #[test]
    fn repeated_flags_are_kept_in_order() {
        assert_eq!(
            norm(&["agent", "-retry-join", "a", "-retry-join=b"]),
            ["muster", "agent", "--retry-join=a", "--retry-join=b"]
        );
    }

    #[test]
    fn help_and_version_forms() {
        assert_eq!(norm(&["agent", "-h"]), ["muster", "agent", "--help"]);
        assert_eq!(norm(&["agent", "-help"]), ["muster", "agent", "--help"]);
        assert_eq!(norm(&["-v"]), ["muster", "version"]);
        assert_eq!(norm(&["--version"]), ["muster", "version"]);
        assert_eq!(norm(&["-version"]), ["muster", "version"]);
        assert_eq!(norm(&["kv", "-h"]), ["muster", "kv", "--help"]);
    }

    #[test]
    fn unknown_things_pass_through_for_clap_to_report() {
        assert_eq!(norm(&["agent", "-nope=1"]), ["muster", "agent", "--nope=1"]);
        assert_eq!(norm(&["bogus", "-x"]), ["muster", "bogus", "-x"]);
    }

    #[test]
    fn missing_value_left_for_clap() {
        assert_eq!(norm(&["agent", "-node"]), ["muster", "agent", "--node"]);
    }

    #[test]
    fn bad_syntax_is_rejected() {
        let cmd = test_cmd();
        for bad in ["---dev", "-=x", "--=x"] {
            let err = normalize(&cmd, ["muster", "agent", bad]).unwrap_err();
            assert_eq!(err, ArgsError::BadSyntax(bad.to_owned()));
        }
    }

    #[test]
    fn key_value_splits_at_first_equals() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert_eq!(
            key_value("nokey"),
            Err("Missing \"=\" value in argument: nokey".to_owned())
        );
    }

    #[test]
    fn go_bool_accepts_go_spellings() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        assert!(go_bool("yes").is_err());
    }

    #[test]
    fn normalized_argv_parses_with_clap() {
        let mut cmd = test_cmd();
        let argv = normalize(
            &cmd,
            ["muster", "kv", "put", "-cas", "-flags", "7", "k", "-v"],
        )
        .unwrap();
        let m = cmd.try_get_matches_from_mut(argv).unwrap();
        let (_, kv) = m.subcommand().unwrap();
        let (_, put) = kv.subcommand().unwrap();
        assert_eq!(put.get_one::<bool>("cas"), Some(&true));
        assert_eq!(
            put.get_one::<String>("flags").map(String::as_str),
            Some("7")
        );
        assert_eq!(put.get_one::<String>("key").map(String::as_str), Some("k"));
        assert_eq!(
            put.get_one::<String>("data").map(String::as_str),
            Some("-v")
        );
    }
}
