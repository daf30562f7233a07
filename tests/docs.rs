//! The manual stays true to the program: every flag of every command is documented, and every
//! config key is in the shipped config file. The flags are read from clap's own `--help`, the
//! keys from serde's own list of the fields it accepts, so a setting added to the code and not
//! to the docs fails here.

use mnist_mlp::config::TrainConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(args)
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{args:?} --help failed");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The long flags an option line of `--help` defines (`  -s, --seed <SEED>  ...`).
fn flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let flag = line
                .split([' ', ',', '=', '['])
                .find(|w| w.starts_with("--"))?;
            (flag != "--help" && flag != "--version").then(|| flag.to_string())
        })
        .collect()
}

/// The subcommands `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The keys serde accepts in one table of the config: the error for an unknown key lists them.
fn accepted_keys(table: Option<&str>) -> Vec<String> {
    let text = match table {
        Some(table) => format!("[{table}]\nno_such_key_here = 1\n"),
        None => "no_such_key_here = 1\n".to_string(),
    };
    let error = TrainConfig::from_toml(&text).expect_err("an unknown key is refused");
    let list = error
        .message
        .split_once("expected")
        .unwrap_or_else(|| panic!("serde lists the keys: {}", error.message))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn every_config_key() -> Vec<String> {
    let mut keys = Vec::new();
    for table in accepted_keys(None) {
        for key in accepted_keys(Some(&table)) {
            keys.push(format!("{table}.{key}"));
        }
    }
    keys
}

#[test]
fn every_flag_of_every_command_is_in_the_manual() {
    let manual = [
        "README.md",
        "docs/usage.md",
        "docs/sweeps.md",
        "docs/serve.md",
    ]
    .map(read)
    .join("\n");
    let top = help(&[]);
    let mut commands: Vec<Vec<String>> = Vec::new();
    for command in subcommands(&top) {
        let nested = subcommands(&help(&[&command]));
        if nested.is_empty() {
            commands.push(vec![command]);
        } else {
            commands.extend(nested.into_iter().map(|n| vec![command.clone(), n]));
        }
    }
    assert!(commands.len() >= 10, "the commands were read: {commands:?}");
    let mut missing = Vec::new();
    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        for flag in flags(&help(&args)) {
            // `--flag` followed by anything but a letter, digit or hyphen: `--seed` is not
            // documented by `--seed-file`.
            let documented = manual.match_indices(&flag).any(|(at, _)| {
                let next = manual[at + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if !documented {
                missing.push(format!("{} {flag}", command.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "flags not in the manual: {missing:?}");
}

#[test]
fn train_flags_are_read_from_help() {
    let train = flags(&help(&["train"]));
    for flag in [
        "--epochs",
        "--batch-size",
        "--config",
        "--resume",
        "--hidden",
    ] {
        assert!(train.contains(flag), "{flag} in {train:?}");
    }
}

#[test]
fn every_config_key_is_in_the_shipped_config_file() {
    let keys = every_config_key();
    assert!(keys.contains(&"train.epochs".to_string()), "{keys:?}");
    assert!(keys.contains(&"augment.flag".to_string()), "{keys:?}");
    let file = read("config/train.toml");
    let mut table = String::new();
    let mut written = BTreeSet::new();
    for line in file.lines() {
        // A key may be commented out (an optional one, shown with an example value).
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(name) = line.strip_prefix('[') {
            table = name.split(']').next().unwrap_or("").to_string();
        } else if let Some((key, _)) = line.split_once('=') {
            written.insert(format!("{table}.{}", key.trim()));
        }
    }
    let missing: Vec<_> = keys.iter().filter(|k| !written.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys not in config/train.toml: {missing:?}"
    );
}

#[test]
fn every_config_key_has_a_flag_or_is_named_as_having_none() {
    let train = help(&["train"]);
    let usage = read("docs/usage.md");
    let mut missing = Vec::new();
    for key in every_config_key() {
        // The flags' help names the key it sets, e.g. "(train.epochs)"; usage.md names the
        // keys that have no flag.
        if !train.contains(&key) && !usage.contains(&format!("`{key}`")) {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "keys with neither a flag naming them nor a mention in docs/usage.md: {missing:?}"
    );
}
