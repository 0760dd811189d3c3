//! libpq's environment fallbacks (`conninfo_add_defaults`), through a lookup function so
//! tests never touch the process environment.

use super::ConnInfo;
use super::keywords::KEYWORDS;

/// Fills every keyword that `info` leaves unset from its `PG*` variable. Like libpq, a
/// variable that is set but empty still counts (`PGHOST=` gives `host=''`), and the
/// deprecated `PGREQUIRESSL` starting with `1` means `sslmode=require` when `PGSSLMODE` is
/// not set. Compiled-in defaults are not filled in: the typed accessors apply them.
pub(super) fn with_env_defaults(
    info: &ConnInfo,
    lookup: impl Fn(&str) -> Option<String>,
) -> ConnInfo {
    let mut out = info.clone();
    for (index, keyword) in KEYWORDS.iter().enumerate() {
        if out.is_set_index(index) {
            continue;
        }
        // A C environment cannot hold NUL, so such a value can only come from a test double.
        let from_env = keyword
            .envvar
            .and_then(&lookup)
            .filter(|v| !v.contains('\0'));
        if let Some(value) = from_env {
            out.put(index, value);
        } else if keyword.name == "sslmode"
            && lookup("PGREQUIRESSL").is_some_and(|v| v.starts_with('1'))
        {
            out.put(index, "require".to_owned());
        }
    }
    out
}
