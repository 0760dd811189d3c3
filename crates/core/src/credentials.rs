//! The connector's credentials: a user name and a password that never shows.
//!
//! ```
//! use pgwarden_core::credentials::Credentials;
//! let c = Credentials::new("pgwarden_connector", "s3cret");
//! assert_eq!(format!("{c:?}"), "Credentials { username: \"pgwarden_connector\", password: *** }");
//! ```

use std::fmt;

use secrecy::SecretString;

/// A PostgreSQL user name and its password.
#[derive(Clone)]
pub struct Credentials {
    /// The role to log in as.
    pub username: String,
    /// Its password, zeroized on drop and redacted in `Debug`.
    pub password: SecretString,
}

impl Credentials {
    /// Credentials from plain strings.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: *** }}",
            self.username
        )
    }
}
