//! What a script's `#!` line says about the program that runs it. Read by the
//! walk, for a script without the execute bit (its extension's interpreter
//! runs it instead of that line), and by the CGI invoker once a function has
//! failed to start. One reading for both, as env reads its argument on Linux:
//! the kernel passes everything after the program as one argument, which env
//! splits only after `-S`.

/// A `#!` line, without the `#!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shebang<'a> {
    /// The whole line, trimmed.
    pub line: &'a str,
    /// The program the kernel runs (`/bin/sh`, `/usr/bin/env`).
    pub program: &'a str,
    /// The rest, which the kernel passes as one argument.
    pub argument: Option<&'a str>,
}

/// What a `#!/usr/bin/env ...` line asks env to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvRequest<'a> {
    /// A program env looks for on PATH (or at a path, with a `/`).
    Program {
        name: &'a str,
        /// The line changes where env looks (`PATH=...`, `-i`, `-C DIR`): what
        /// the function's own PATH says is no guide.
        own_search: bool,
        /// Words after the program: options for it (`-S python3 -u`).
        with_options: bool,
    },
    /// Several words without `-S`: env looks for one program named by all of
    /// them (`python3 -u`), which is never there.
    OneArgument(&'a str),
    /// Options or assignments only: nothing to look for.
    Other,
}

impl<'a> Shebang<'a> {
    /// The `#!` line at the start of `head` (a file's first bytes), if it has
    /// one that ends within them and is UTF-8.
    pub fn of(head: &'a [u8]) -> Option<Self> {
        let line = head.strip_prefix(b"#!")?;
        let line = &line[..line.iter().position(|&byte| byte == b'\n')?];
        Self::parse(std::str::from_utf8(line).ok()?)
    }

    /// A line already without its `#!`.
    pub fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        let (program, argument) = match line.split_once(char::is_whitespace) {
            Some((program, rest)) => (program, Some(rest.trim()).filter(|rest| !rest.is_empty())),
            None => (line, None),
        };
        (!program.is_empty()).then_some(Self {
            line,
            program,
            argument,
        })
    }

    /// The file name of the program the kernel runs.
    pub fn program_name(&self) -> &'a str {
        self.program.rsplit('/').next().unwrap_or(self.program)
    }

    /// What env is asked to run, for a line that runs env.
    pub fn env_request(&self) -> Option<EnvRequest<'a>> {
        if self.program_name() != "env" {
            return None;
        }
        let argument = self.argument?;
        let mut words = argument.split_whitespace();
        let first = words.next()?;
        let split = match first {
            "-S" | "--split-string" => true,
            _ if first.starts_with("-S") => {
                // `-Spython3`: the program is glued to the option.
                return Some(EnvRequest::Program {
                    name: &first[2..],
                    own_search: false,
                    with_options: words.next().is_some(),
                });
            }
            _ => false,
        };
        if !split {
            let one_word = !argument.contains(char::is_whitespace);
            return Some(if first.starts_with('-') || first.contains('=') {
                EnvRequest::Other
            } else if one_word {
                EnvRequest::Program {
                    name: first,
                    own_search: false,
                    with_options: false,
                }
            } else {
                EnvRequest::OneArgument(argument)
            });
        }
        let mut own_search = false;
        while let Some(word) = words.next() {
            match word {
                "-u" | "--unset" => {
                    words.next();
                }
                "-C" | "--chdir" => {
                    own_search = true;
                    words.next();
                }
                "-i" | "--ignore-environment" | "-" => own_search = true,
                _ if word.starts_with('-') => {}
                _ if word.contains('=') => own_search |= word.starts_with("PATH="),
                name => {
                    return Some(EnvRequest::Program {
                        name,
                        own_search,
                        with_options: words.next().is_some(),
                    });
                }
            }
        }
        Some(EnvRequest::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Option<EnvRequest<'_>> {
        Shebang::parse(line)?.env_request()
    }

    #[test]
    fn env_lines_are_read_as_linux_env_reads_its_one_argument() {
        let program = |name, own_search, with_options| {
            Some(EnvRequest::Program {
                name,
                own_search,
                with_options,
            })
        };
        assert_eq!(
            request("/usr/bin/env python3"),
            program("python3", false, false)
        );
        assert_eq!(
            request("/usr/bin/env python3 -u"),
            Some(EnvRequest::OneArgument("python3 -u"))
        );
        assert_eq!(
            request("/usr/bin/env -S python3 -u"),
            program("python3", false, true)
        );
        assert_eq!(
            request("/usr/bin/env -Spython3"),
            program("python3", false, false)
        );
        assert_eq!(
            request("/usr/bin/env -S -u HOME python3"),
            program("python3", false, false)
        );
        assert_eq!(
            request("/usr/bin/env -S PATH=/opt/x ruby"),
            program("ruby", true, false)
        );
        assert_eq!(
            request("/usr/bin/env -S -i ruby"),
            program("ruby", true, false)
        );
        assert_eq!(
            request("/usr/bin/env VAR=1 python3"),
            Some(EnvRequest::Other)
        );
        assert_eq!(request("/usr/bin/env -i python3"), Some(EnvRequest::Other));
        assert_eq!(request("/bin/sh -e"), None);
        let plain = Shebang::parse(" /bin/sh -e ").unwrap();
        assert_eq!(
            (plain.program, plain.argument, plain.program_name()),
            ("/bin/sh", Some("-e"), "sh")
        );
        assert_eq!(Shebang::of(b"#!/bin/sh\n"), Shebang::parse("/bin/sh"));
        assert_eq!(
            Shebang::of(b"#!/bin/sh"),
            None,
            "no line end within the head"
        );
        assert_eq!(Shebang::of(b"echo\n"), None);
    }
}
