//! Whether log lines carry ANSI colour: only on a terminal, and never when
//! `NO_COLOR` is set (<https://no-color.org>). Escape codes in a pipe or a
//! log file are noise to whatever reads them (a log collector, the VM demo).

use std::ffi::OsStr;

/// True when a stream should be coloured: it is a terminal and `NO_COLOR`
/// is unset or empty (an empty value does not opt out, per no-color.org).
pub fn wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::wanted;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let cases: &[(bool, Option<&str>, bool)] = &[
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("0"), false),
            (false, None, false),
            (false, Some(""), false),
            (false, Some("1"), false),
        ];
        for &(tty, no_color, want) in cases {
            assert_eq!(
                wanted(tty, no_color.map(OsStr::new)),
                want,
                "terminal {tty}, NO_COLOR {no_color:?}"
            );
        }
    }
}
