//! `watchdog routes DIR`: the route table with each function's effective settings,
//! conflicts, and files that are not routes (with why).

use std::fmt::Write;

use anyhow::Context;

use super::{CommandError, usage};
use crate::config::Settings;
use crate::routes::RouteTable;

pub fn run(settings: &Settings, json: bool) -> Result<(), CommandError> {
    let table = RouteTable::for_settings(settings)
        .with_context(|| format!("reading {}", settings.dir.display()))
        .map_err(usage)?;
    crate::routes::setting_warnings::report_setting_problems(settings, &table);
    if json {
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
    let file_width = table
        .functions
        .iter()
        .map(|f| f.file.relative.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let runs_width = table
        .functions
        .iter()
        .map(|f| f.file.runner.describe().len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "{:width$}  {:file_width$}  {:runs_width$}  SETTINGS",
        "ROUTE", "FILE", "RUNS AS"
    );
    for function in &table.functions {
        let s = &function.settings;
        let mut notes = vec![format!("timeout={}", humantime::format_duration(s.timeout))];
        notes.extend(
            s.shown()
                .into_iter()
                .map(|(key, value)| format!("{key}={}", value.text)),
        );
        if !s.matched.is_empty() {
            notes.push(format!("from {}", s.matched.join(" < ")));
        }
        let _ = writeln!(
            out,
            "{:width$}  {:file_width$}  {:runs_width$}  {}",
            function.pattern,
            function.file.relative,
            function.file.runner.describe(),
            notes.join(" ")
        );
    }
    if !table.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "\nconflicts (each URL answers 500 until one file is left):"
        );
        for (pattern, ids) in &table.conflicts {
            let files = table.conflict_files(ids);
            let _ = writeln!(out, "  {pattern}: {}", files.join(", "));
        }
    }
    let cautions: Vec<_> = (table.functions.iter())
        .filter_map(|f| Some((&f.file.relative, f.file.caution.as_ref()?)))
        .collect();
    if !cautions.is_empty() {
        let _ = writeln!(out, "\nmay not run as meant:");
        for (file, caution) in cautions {
            let _ = writeln!(out, "  {file}: {caution}");
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
