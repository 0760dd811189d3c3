//! Matching: the condition operators over a set of subjects, and `*` wildcards.

use super::MatchOperator;

impl MatchOperator {
    /// Whether `subjects` (a user id, or a user's group names) satisfy the operator
    /// over `values`: some subject matches some value for the positive operators, no
    /// subject matches any value for the negative ones.
    pub(crate) fn holds<S: AsRef<str>>(self, subjects: &[S], values: &[String]) -> bool {
        let any = |test: fn(&str, &str) -> bool| {
            subjects
                .iter()
                .any(|s| values.iter().any(|v| test(s.as_ref(), v)))
        };
        match self {
            MatchOperator::Is => any(|s, v| s == v),
            MatchOperator::IsNot => !any(|s, v| s == v),
            MatchOperator::Contains => any(|s, v| s.contains(v)),
            MatchOperator::DoesNotContain => !any(|s, v| s.contains(v)),
            MatchOperator::StartsWith => any(|s, v| s.starts_with(v)),
        }
    }

    /// Whether the operator is one of the negative ones (`is_not`,
    /// `does_not_contain`).
    pub(crate) fn is_negative(self) -> bool {
        matches!(self, MatchOperator::IsNot | MatchOperator::DoesNotContain)
    }

    /// How the operator reads in a sentence: "is one of".
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            MatchOperator::Is => "is one of",
            MatchOperator::IsNot => "is none of",
            MatchOperator::Contains => "contains one of",
            MatchOperator::DoesNotContain => "contains none of",
            MatchOperator::StartsWith => "starts with one of",
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none
/// included) other than `/` when `cross_slash` is false, and everything else is
/// literal.
pub(crate) fn wildcard(pattern: &str, text: &str, cross_slash: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic greedy matching with one backtrack point: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star
            && (cross_slash || t[st] != '/')
        {
            // Let the last star swallow one more character.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("inv*", "invoices", false, true),
            ("*", "", false, true),
            ("*", "a/b", false, false),
            ("*", "a/b", true, true),
            ("app/*/t", "app/s/t", false, true),
            ("app/*", "app/s/t", false, false),
            ("a*c*e", "abcde", false, true),
            ("a*c*e", "abcdf", false, false),
            ("exact", "exact", false, true),
            ("exact", "exactly", false, false),
            ("*ly", "exactly", false, true),
            ("p*:*/*", "postgresql-schema:app/s", false, true),
            ("", "", false, true),
            ("", "x", false, false),
            ("é*", "été", false, true),
        ];
        for (pattern, text, cross, want) in cases {
            assert_eq!(wildcard(pattern, text, cross), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn operators() {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let groups = ["dba", "ops-eu"];
        assert!(MatchOperator::Is.holds(&groups, &v(&["x", "dba"])));
        assert!(!MatchOperator::Is.holds(&groups, &v(&["db"])));
        assert!(MatchOperator::IsNot.holds(&groups, &v(&["contractors"])));
        assert!(!MatchOperator::IsNot.holds(&groups, &v(&["dba"])));
        assert!(MatchOperator::Contains.holds(&groups, &v(&["-eu"])));
        assert!(MatchOperator::DoesNotContain.holds(&groups, &v(&["us"])));
        assert!(!MatchOperator::DoesNotContain.holds(&groups, &v(&["ops"])));
        assert!(MatchOperator::StartsWith.holds(&groups, &v(&["ops-"])));
        assert!(!MatchOperator::StartsWith.holds(&groups, &v(&["eu"])));
        let none: [&str; 0] = [];
        assert!(!MatchOperator::Is.holds(&none, &v(&["dba"])));
        assert!(MatchOperator::IsNot.holds(&none, &v(&["dba"])));
    }
}
