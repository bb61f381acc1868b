//! A program's environment in the form `execve` takes, in two layers: what a CGI
//! function starts with whatever the request (its own variables from the
//! inherited environment, `.env`, config and `--env`, and the meta-variables that
//! never change), turned into C strings once; and a request's variables on top.
//!
//! Why two layers: rebuilding the whole block per request (copying the function's
//! variables, hashing every name, one C string each) was ~3% of a connection
//! thread's time at 16 connections, for variables that never change.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use super::spawn::CStringArray;

/// The variables every start of a function gets, as `NAME=value` C strings, one
/// per name.
#[derive(Debug)]
pub struct EnvBlock {
    entries: Vec<CString>,
    /// Where each name's entry is, to let a request's variable replace it.
    positions: HashMap<Box<[u8]>, usize>,
    /// A variable that holds a NUL byte, which no C string can carry: reported at
    /// each spawn rather than dropped quietly.
    unusable: Option<String>,
}

impl EnvBlock {
    /// Builds the block from variables in the order they are applied (the last
    /// value of a name wins).
    pub fn new(env: &[(OsString, OsString)]) -> Self {
        let mut block = Self {
            entries: Vec::new(),
            positions: HashMap::new(),
            unusable: None,
        };
        for (name, value) in last_wins(env) {
            match entry(name, value) {
                Ok(entry) => {
                    block
                        .positions
                        .insert(name.as_bytes().into(), block.entries.len());
                    block.entries.push(entry);
                }
                Err(_) => {
                    block.unusable = Some(name.to_string_lossy().into_owned());
                }
            }
        }
        block
    }

    /// The value of `name`, if the block has it.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        let entry = self.entries[*self.positions.get(name.as_bytes())?].as_bytes();
        Some(OsStr::from_bytes(&entry[name.len() + 1..]))
    }

    /// The full `envp`: these variables with `layer` on top (the last value of a
    /// name wins; names keep the place they first appeared at), borrowing the
    /// block's own strings.
    ///
    /// # Errors
    /// `InvalidInput` when a variable of either layer holds a NUL byte.
    pub fn envp<'a>(&'a self, layer: &[(OsString, OsString)]) -> io::Result<CStringArray<'a>> {
        if let Some(name) = &self.unusable {
            return Err(nul_byte(name));
        }
        let layer = last_wins(layer);
        let mut replaced: Vec<Option<(&OsStr, &OsStr)>> = vec![None; self.entries.len()];
        let mut added = Vec::with_capacity(layer.len());
        for (name, value) in layer {
            match self.positions.get(name.as_bytes()) {
                Some(&at) => replaced[at] = Some((name, value)),
                None => added.push((name, value)),
            }
        }
        let mut envp = CStringArray::with_capacity(self.entries.len() + added.len());
        for (own, replacement) in self.entries.iter().zip(replaced) {
            match replacement {
                Some((name, value)) => envp.push(entry(name, value)?),
                None => envp.push_borrowed(own),
            }
        }
        for (name, value) in added {
            envp.push(entry(name, value)?);
        }
        Ok(envp)
    }
}

/// `NAME=value` as a C string.
fn entry(name: &OsStr, value: &OsStr) -> io::Result<CString> {
    let mut bytes = Vec::with_capacity(name.len() + value.len() + 1);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    CString::new(bytes).map_err(|_| nul_byte(&name.to_string_lossy()))
}

fn nul_byte(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the environment variable {name} holds a NUL byte"),
    )
}

/// The environment with one entry per name, the last one given winning, in the
/// order the names first appeared. The layers (inherited, `.env`, config,
/// `--env`, per-function, then the CGI variables) rely on later ones overriding
/// earlier ones, as std's `Command::envs` does; a raw `envp` with duplicates would
/// let C, Go and Node programs (`getenv` takes the first) see the overridden value.
fn last_wins(env: &[(OsString, OsString)]) -> Vec<(&OsStr, &OsStr)> {
    let mut index: HashMap<&OsStr, usize> = HashMap::with_capacity(env.len());
    let mut entries: Vec<(&OsStr, &OsStr)> = Vec::with_capacity(env.len());
    for (key, value) in env {
        match index.entry(key.as_os_str()) {
            std::collections::hash_map::Entry::Occupied(slot) => entries[*slot.get()].1 = value,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(entries.len());
                entries.push((key, value));
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(envp: &CStringArray<'_>) -> Vec<String> {
        envp.iter()
            .map(|entry| entry.to_string_lossy().into_owned())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn the_last_value_of_a_name_wins_in_first_seen_order() {
        let env = pairs(&[("A", "1"), ("B", "2"), ("A", "3"), ("C", "4"), ("B", "5")]);
        let got: Vec<(&str, &str)> = last_wins(&env)
            .into_iter()
            .map(|(k, v)| (k.to_str().unwrap(), v.to_str().unwrap()))
            .collect();
        assert_eq!(got, [("A", "3"), ("B", "5"), ("C", "4")]);
    }

    #[test]
    fn a_request_layer_replaces_the_functions_values_in_place() {
        let block = EnvBlock::new(&pairs(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("PATH", "/usr/bin"),
            ("LANG", "C"),
        ]));
        let layer = pairs(&[
            ("REQUEST_METHOD", "GET"),
            ("HOME", "/nowhere"),
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
        ]);
        let envp = block.envp(&layer).unwrap();
        assert_eq!(
            strings(&envp),
            [
                "PATH=/usr/bin",
                "HOME=/nowhere",
                "LANG=C",
                "REQUEST_METHOD=POST",
                "QUERY_STRING=a=1"
            ]
        );
        // The same as one flat list with the request's variables last.
        let mut flat = pairs(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("PATH", "/usr/bin"),
            ("LANG", "C"),
        ]);
        flat.extend(layer);
        let expected: Vec<String> = last_wins(&flat)
            .into_iter()
            .map(|(k, v)| format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap()))
            .collect();
        assert_eq!(strings(&envp), expected);
        assert_eq!(block.get("PATH"), Some(OsStr::new("/usr/bin")));
        assert_eq!(block.get("PAT"), None);
        // The block itself is unchanged for the next request.
        assert_eq!(
            strings(&block.envp(&[]).unwrap()),
            ["PATH=/usr/bin", "HOME=/root", "LANG=C"]
        );
    }

    #[test]
    fn a_nul_byte_in_either_layer_is_an_error_naming_the_variable() {
        let block = EnvBlock::new(&pairs(&[("GOOD", "1")]));
        let err = block
            .envp(&[(OsString::from("BAD"), OsString::from("a\0b"))])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("BAD"), "{err}");
        let block = EnvBlock::new(&[(OsString::from("WORSE"), OsString::from("a\0b"))]);
        let err = block.envp(&[]).unwrap_err();
        assert!(err.to_string().contains("WORSE"), "{err}");
    }
}
