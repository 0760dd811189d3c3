//! Building libpq key/value connection strings.

/// `key=value` pairs joined by spaces, each value quoted when libpq needs it.
pub(crate) fn build(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", quote_value(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A conninfo value: bare when it is plain, else single-quoted with `\` and `'`
/// backslash-escaped (libpq's rules).
pub(crate) fn quote_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote_value("abc"), "abc");
        assert_eq!(quote_value(""), "''");
        assert_eq!(quote_value("a b"), "'a b'");
        assert_eq!(quote_value(r"it's\"), r"'it\'s\\'");
        assert_eq!(
            build(&[("host", "127.0.0.1"), ("password", "p w")]),
            "host=127.0.0.1 password='p w'"
        );
    }
}
