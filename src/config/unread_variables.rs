//! `WATCHDOG_*` variables in watchdog's environment that it does not read.
//!
//! Every flag is also read from its `WATCHDOG_<FLAG>` variable, so a misspelled
//! one (`WATCHDOG_TIMOUT=5s` in a unit file or a compose file) is a setting that
//! silently does not apply: the server starts with the default and nothing says
//! why. A flag typed wrong is an error from clap; a variable typed wrong is
//! only ever seen here, so it is warned of at start, with the closest name read.

use std::ffi::OsString;
use std::fmt;

const PREFIX: &str = "WATCHDOG_";

/// Names under the prefix that are not watchdog's settings and are no mistake:
/// systemd's service watchdog (`WatchdogSec=`) sets the first two for the
/// process it supervises, and the rest are what watchdog gives its own
/// functions, present when one watchdog runs under another.
const NOT_SETTINGS: &[&str] = &[
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "WATCHDOG_PARAMS",
    "WATCHDOG_REQUEST_ID",
    "WATCHDOG_DEADLINE_MS",
];
/// Per route parameter, `WATCHDOG_PARAM_<NAME>`, given to functions.
const PARAM_PREFIX: &str = "WATCHDOG_PARAM_";

/// A `WATCHDOG_*` variable that is set and read by nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Unread {
    pub name: String,
    /// The variable read whose name is closest, when one is close enough to be
    /// the one meant.
    pub closest: Option<String>,
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is set, but watchdog reads no variable of that name, so it changes nothing",
            self.name
        )?;
        match &self.closest {
            Some(closest) => write!(f, ": did you mean {closest}?"),
            None => write!(
                f,
                "; each flag is read from WATCHDOG_ and its name in capitals (--max-body from WATCHDOG_MAX_BODY, see watchdog serve --help)"
            ),
        }
    }
}

/// The variables clap reads, for every subcommand's flags and arguments.
fn read_by_watchdog() -> Vec<String> {
    let command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut names: Vec<String> = command
        .get_subcommands()
        .flat_map(clap::Command::get_arguments)
        .filter_map(clap::Arg::get_env)
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The unread `WATCHDOG_*` variables among `environment`'s names, leaving out
/// those `passed` on to the functions (`--pass-env WATCHDOG_FOO`): read by
/// them, if not by watchdog.
pub fn find(environment: impl IntoIterator<Item = OsString>, passed: &[OsString]) -> Vec<Unread> {
    let read = read_by_watchdog();
    let mut unread: Vec<Unread> = environment
        .into_iter()
        .filter(|name| !passed.contains(name))
        .filter_map(|name| name.into_string().ok())
        .filter(|name| {
            name.starts_with(PREFIX)
                && !name.starts_with(PARAM_PREFIX)
                && !NOT_SETTINGS.contains(&name.as_str())
                && !read.contains(name)
        })
        .map(|name| Unread {
            closest: closest(&name, &read),
            name,
        })
        .collect();
    unread.sort_by(|a, b| a.name.cmp(&b.name));
    unread
}

/// The name in `read` closest to `name`, when it is within a typo or two of it
/// (a third of the part after the prefix, at least two edits).
fn closest(name: &str, read: &[String]) -> Option<String> {
    let (best, distance) = read
        .iter()
        .map(|candidate| (candidate, strsim::levenshtein(name, candidate)))
        .min_by_key(|(_, distance)| *distance)?;
    let allowed = (name.len().saturating_sub(PREFIX.len()) / 3).max(2);
    (distance <= allowed).then(|| best.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_misspelled_variable_is_named_with_the_one_meant() {
        let found = find(names(&["WATCHDOG_TIMOUT", "PATH", "WATCHDOG_TIMEOUT"]), &[]);
        assert_eq!(
            found,
            vec![Unread {
                name: "WATCHDOG_TIMOUT".into(),
                closest: Some("WATCHDOG_TIMEOUT".into()),
            }]
        );
        let text = found[0].to_string();
        assert!(text.contains("did you mean WATCHDOG_TIMEOUT?"), "{text}");
    }

    #[test]
    fn a_name_like_none_gets_the_rule_instead_of_a_guess() {
        let found = find(names(&["WATCHDOG_COLOUR_SCHEME"]), &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].closest, None);
        assert!(found[0].to_string().contains("WATCHDOG_MAX_BODY"));
    }

    #[test]
    fn variables_read_and_those_of_others_are_not_named() {
        let found = find(
            names(&[
                "WATCHDOG_DIR",
                "WATCHDOG_MAX_BODY",
                "WATCHDOG_LOG_FORMAT",
                "WATCHDOG_USER",
                "WATCHDOG_USEC",
                "WATCHDOG_PID",
                "WATCHDOG_PARAM_ID",
                "WATCHDOG_PARAMS",
                "WATCHDOG_REQUEST_ID",
                "WATCHDOG_DEADLINE_MS",
                "HOME",
                "WATCHDOG_PASSED_ON",
            ]),
            &names(&["WATCHDOG_PASSED_ON"]),
        );
        assert_eq!(found, vec![]);
    }
}
