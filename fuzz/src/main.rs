//! sessiongate's fuzz targets, one binary (one link) for all of them.
//!
//! `sg-fuzz TARGET` is what `afl-fuzz` runs (persistent mode: one process, many inputs);
//! `sg-fuzz replay TARGET FILE...` runs files through a target without AFL (a crash found,
//! a seed corpus) and reports each panic; `sg-fuzz list` names the targets. Each target checks
//! an oracle — a property that must hold for every input, stated at the top of its module —
//! and panics when it does not, so a violation is a crash to AFL.

mod support;
mod targets;

use std::panic;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["list"] => {
            for t in targets::ALL {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        ["replay", name, files @ ..] => match targets::find(name) {
            Some(t) => replay(t, files),
            None => unknown(name),
        },
        [name] => match targets::find(name) {
            Some(t) => {
                afl::fuzz(true, |data| (t.run)(data));
                ExitCode::SUCCESS
            }
            None => unknown(name),
        },
        _ => {
            eprintln!("usage: sg-fuzz list | sg-fuzz TARGET | sg-fuzz replay TARGET FILE...");
            ExitCode::from(2)
        }
    }
}

fn unknown(name: &str) -> ExitCode {
    eprintln!("sg-fuzz: no target {name:?} (sg-fuzz list)");
    ExitCode::from(2)
}

/// Run each file (a directory: each file in it) through `t`; fail if any panics.
fn replay(t: &targets::Target, files: &[&str]) -> ExitCode {
    let mut paths = Vec::new();
    for f in files {
        let p = std::path::Path::new(f);
        match std::fs::read_dir(p) {
            Ok(dir) => {
                let mut inside: Vec<_> = dir.flatten().map(|e| e.path()).collect();
                inside.sort();
                paths.extend(inside.into_iter().filter(|p| p.is_file()));
            }
            Err(_) => paths.push(p.to_path_buf()),
        }
    }
    let mut failed = 0usize;
    for p in &paths {
        let Ok(data) = std::fs::read(p) else {
            eprintln!("sg-fuzz: cannot read {}", p.display());
            failed += 1;
            continue;
        };
        if panic::catch_unwind(|| (t.run)(&data)).is_err() {
            eprintln!("sg-fuzz: {} FAILED on {}", t.name, p.display());
            failed += 1;
        }
    }
    println!(
        "sg-fuzz replay {}: {} inputs, {failed} failed",
        t.name,
        paths.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
