//! `watchdog routes DIR`: the route table, conflicts, and files that are not routes.

use std::fmt::Write;

use super::{CommandError, usage};
use crate::cli::RoutesArgs;
use crate::routes::{RouteTable, normalize_prefix};

pub fn run(args: &RoutesArgs) -> Result<(), CommandError> {
    let prefix = match &args.prefix {
        Some(prefix) => prefix.clone(),
        None => {
            let dir = args.dir.canonicalize().map_err(|err| {
                usage(anyhow::anyhow!(
                    "{}: {err}\nhint: pass the folder of functions, e.g. `watchdog routes ./api`",
                    args.dir.display()
                ))
            })?;
            format!(
                "/{}",
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        }
    };
    let table = RouteTable::build(&args.dir, &normalize_prefix(&prefix))
        .map_err(|err| usage(anyhow::anyhow!("{}: {err}", args.dir.display())))?;
    if args.json {
        println!("{:#}", table.to_json());
    } else {
        print!("{}", render(&table));
    }
    Ok(())
}

/// The human table.
pub fn render(table: &RouteTable) -> String {
    let mut out = String::new();
    let width = table
        .functions
        .iter()
        .map(|f| f.pattern.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(out, "{:width$}  {:30}  RUNS AS", "ROUTE", "FILE");
    for function in &table.functions {
        let _ = writeln!(
            out,
            "{:width$}  {:30}  {}",
            function.pattern,
            function.file.relative,
            function.file.runner.describe()
        );
    }
    if !table.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "\nconflicts (each URL answers 500 until one file is left):"
        );
        for (pattern, ids) in &table.conflicts {
            let files: Vec<&str> = ids
                .iter()
                .map(|&i| table.functions[i].file.relative.as_str())
                .collect();
            let _ = writeln!(out, "  {pattern}: {}", files.join(", "));
        }
    }
    if !table.skipped.is_empty() {
        let _ = writeln!(out, "\nnot routes:");
        for skipped in &table.skipped {
            let _ = writeln!(out, "  {}: {}", skipped.relative, skipped.reason);
        }
    }
    out
}
