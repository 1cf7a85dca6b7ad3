//! The command line of a run, recorded so that a shell at the project root reproduces
//! it: the run log's lines, each report's command and its phase's reproducing command.
//!
//! The words are kept as the process got them (not necessarily UTF-8) and quoted only
//! when rendered: a word of plain characters as it is, any other in single quotes, and
//! a word that is not UTF-8 in `$'...'` with its bytes escaped (bash and zsh read it;
//! a POSIX shell does not, and there is no portable spelling of such a word).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The options of `run` that take a value as the next word (or after `=`); the command
/// line's tests hold the list to its parser.
pub const VALUED: [&str; 8] =
    ["--set", "--profile", "--phase", "--filter", "--log-file", "--baseline", "--junit", "--summary"];

/// Options a phase's reproducing command leaves out: where the run's CI outputs and
/// log went, which reproducing one phase must not overwrite.
pub const OUTPUTS: [&str; 3] = ["--log-file", "--junit", "--summary"];

/// A run's command line: the words it was started with, the variables that changed
/// the spec and the directory it ran in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandLine {
    /// The `PHASEGATE_*` variables that override the spec, by name.
    pub variables: Vec<(String, String)>,
    /// The words after the program: `run SPEC ...`.
    pub args: Vec<OsString>,
    /// Where it ran, relative to the project root (empty at the root).
    pub dir: String,
}

impl CommandLine {
    /// A command line of `args`, run at the project root with no variables.
    pub fn of<I, S>(args: I) -> CommandLine
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        CommandLine { args: args.into_iter().map(Into::into).collect(), ..CommandLine::default() }
    }

    /// As a shell at the project root takes it: `[cd DIR && ]VAR=... cargo xtask ARGS`.
    pub fn render(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if !self.dir.is_empty() {
            // `cd -x` would read an option.
            let dir = if self.dir.starts_with('-') { format!("./{}", self.dir) } else { self.dir.clone() };
            words.extend(["cd".to_owned(), quote(dir.as_bytes()), "&&".to_owned()]);
        }
        let mut variables = self.variables.clone();
        variables.sort();
        words.extend(variables.iter().map(|(name, value)| format!("{name}={}", quote(value.as_bytes()))));
        words.push("cargo xtask".to_owned());
        words.extend(self.args.iter().map(|arg| quote(arg.as_bytes())));
        words.join(" ")
    }

    /// The command that runs phase `phase` alone: any `--phase` replaced by this one
    /// (before a `--`, after which every word is positional), and the options naming
    /// the run's log and CI files left out.
    pub fn for_phase(&self, phase: &str) -> CommandLine {
        let mut args: Vec<OsString> = Vec::with_capacity(self.args.len() + 2);
        let mut words = self.args.iter();
        let mut positional_from = None;
        while let Some(word) = words.next() {
            let text = word.to_string_lossy();
            if text == "--" {
                positional_from = Some(args.len());
                args.push(word.clone());
                args.extend(words.by_ref().cloned());
                break;
            }
            let name = text.split_once('=').map_or(&*text, |(name, _)| name);
            let dropped = name == "--phase" || OUTPUTS.contains(&name);
            if VALUED.contains(&name) && name == text {
                // The value is the next word.
                let value = words.next();
                if !dropped {
                    args.push(word.clone());
                    args.extend(value.cloned());
                }
            } else if !dropped {
                args.push(word.clone());
            }
        }
        let at = positional_from.unwrap_or(args.len());
        args.splice(at..at, [OsString::from("--phase"), OsString::from(phase)]);
        CommandLine { args, ..self.clone() }
    }
}

/// One word for a shell.
fn quote(word: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(word) else {
        let escaped: String = word
            .iter()
            .map(|&byte| match byte {
                b'\'' | b'\\' => format!("\\{}", byte as char),
                0x20..=0x7e => (byte as char).to_string(),
                _ => format!("\\x{byte:02x}"),
            })
            .collect();
        return format!("$'{escaped}'");
    };
    crate::describe::shell_quote(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> CommandLine {
        CommandLine::of(text.split(' '))
    }

    #[test]
    fn a_phase_command_replaces_the_phase_and_drops_the_outputs() {
        for (given, phase_alone) in [
            ("run spec.toml", "cargo xtask run spec.toml --phase a"),
            ("run spec.toml --phase b --set x=1", "cargo xtask run spec.toml --set x=1 --phase a"),
            ("run --phase=b spec.toml", "cargo xtask run spec.toml --phase a"),
            ("run spec.toml --phase", "cargo xtask run spec.toml --phase a"),
            // A value that holds an option's name is a value.
            (
                "run spec.toml --set x=--phase --filter --phase",
                "cargo xtask run spec.toml --set x=--phase --filter --phase --phase a",
            ),
            // After `--` every word is positional.
            ("run --plain -- spec.toml", "cargo xtask run --plain --phase a -- spec.toml"),
            ("run --phase b -- --phase", "cargo xtask run --phase a -- --phase"),
            (
                "run spec.toml --log-file l.jsonl --junit=j.xml --summary s.md --baseline latest",
                "cargo xtask run spec.toml --baseline latest --phase a",
            ),
        ] {
            assert_eq!(words(given).for_phase("a").render(), phase_alone, "{given}");
        }
    }

    #[test]
    fn words_are_quoted_for_a_shell_at_the_project_root() {
        let mut command = CommandLine::of(["run", "my spec.toml", "--set", "experiment.title=Bob's"]);
        command.variables = vec![("PHASEGATE_B".into(), "2 ".into()), ("PHASEGATE_A".into(), "1".into())];
        command.dir = "-sub dir".into();
        assert_eq!(
            command.render(),
            "cd './-sub dir' && PHASEGATE_A=1 PHASEGATE_B='2 ' cargo xtask run 'my spec.toml' --set 'experiment.title=Bob'\\''s'"
        );
        // Bytes that are not UTF-8 are escaped, the rest kept.
        use std::os::unix::ffi::OsStringExt;
        let command = CommandLine::of([OsString::from("run"), OsString::from_vec(b"b\xff'\\.toml".to_vec())]);
        assert_eq!(command.render(), "cargo xtask run $'b\\xff\\'\\\\.toml'");
        assert_eq!(quote(b""), "''");
    }
}
