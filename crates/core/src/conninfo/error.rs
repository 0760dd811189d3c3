//! The one error type of the conninfo module.

use crate::ssl::SslRuleError;

/// Why a connection string (or one of its values) was refused.
///
/// Messages follow libpq's wording where libpq has one. No message ever contains a secret
/// value (password, sslpassword, SCRAM keys, OAuth client secret): where libpq would quote
/// one, `***` stands in for it. Positions are 0-based byte offsets into the input string;
/// messages that libpq phrases as "at position N" print libpq's 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnInfoError {
    /// A keyword is not followed by `=` (`host localhost`).
    #[error("missing \"=\" after \"{keyword}\" in connection info string")]
    MissingEquals {
        /// The word that should have been a keyword (`***` when it is the tail of an
        /// unquoted secret value that contained a space).
        keyword: String,
        /// Where that word starts.
        position: usize,
    },
    /// A quoted value has no closing quote.
    #[error("unterminated quoted string in connection info string (value of \"{keyword}\")")]
    UnterminatedQuote {
        /// The keyword whose value is unterminated.
        keyword: String,
        /// Where the opening quote is.
        position: usize,
    },
    /// The string contains a NUL character, which no libpq string can hold.
    #[error("connection info string contains a NUL character at byte {position}")]
    NulCharacter {
        /// Where the NUL is.
        position: usize,
    },
    /// A keyword libpq does not know (`invalid connection option "hots"`).
    #[error("invalid connection option \"{keyword}\"")]
    InvalidOption {
        /// The unknown keyword (`***` when it is the tail of an unquoted secret value).
        keyword: String,
    },
    /// A URI query parameter names no libpq keyword (`?hots=x`).
    #[error("invalid URI query parameter: \"{keyword}\"")]
    InvalidUriQueryParameter {
        /// The unknown keyword, percent-decoded.
        keyword: String,
    },
    /// A URI query parameter without `=` (`?sslmode`).
    #[error("missing key/value separator \"=\" in URI query parameter: \"{parameter}\"")]
    MissingUriQuerySeparator {
        /// The parameter as written.
        parameter: String,
    },
    /// A URI query parameter with two `=` (`?a=b=c`).
    #[error("extra key/value separator \"=\" in URI query parameter: \"{keyword}\"")]
    ExtraUriQuerySeparator {
        /// The parameter's keyword as written.
        keyword: String,
    },
    /// `[` without a matching `]` in a URI host.
    #[error(
        "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"{uri}\""
    )]
    UnterminatedIpv6 {
        /// The URI, with any password replaced by `***`.
        uri: String,
    },
    /// `[]` in a URI host.
    #[error("IPv6 host address may not be empty in URI: \"{uri}\"")]
    EmptyIpv6 {
        /// The URI, with any password replaced by `***`.
        uri: String,
    },
    /// Something other than `:`, `/`, `?` or `,` after `]` in a URI host.
    #[error(
        "unexpected character \"{character}\" at position {} in URI (expected \":\" or \"/\"): \"{uri}\"",
        position + 1
    )]
    UnexpectedUriCharacter {
        /// The character found.
        character: char,
        /// Where it is.
        position: usize,
        /// The URI, with any password replaced by `***`.
        uri: String,
    },
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoded token in \"{keyword}\": \"{value}\"")]
    InvalidPercentEncoding {
        /// The keyword (or URI part) being decoded.
        keyword: String,
        /// The text as written (`***` for secrets).
        value: String,
    },
    /// `%00` in a URI: libpq strings cannot hold NUL.
    #[error("forbidden value %00 in percent-encoded value of \"{keyword}\": \"{value}\"")]
    PercentEncodedNul {
        /// The keyword (or URI part) being decoded.
        keyword: String,
        /// The text as written (`***` for secrets).
        value: String,
    },
    /// A space inside a URI part (leading and trailing spaces are ignored, as libpq 17+ does).
    #[error(
        "unexpected spaces found in \"{value}\" (value of \"{keyword}\"), use percent-encoded spaces (%20) instead"
    )]
    UnexpectedSpaces {
        /// The keyword (or URI part) being decoded.
        keyword: String,
        /// The text as written (`***` for secrets).
        value: String,
    },
    /// Percent-decoding produced bytes that are not UTF-8 (libpq would accept them; pgwarden
    /// keeps values as Rust strings).
    #[error("percent-decoded value of \"{keyword}\" is not valid UTF-8")]
    InvalidUtf8 {
        /// The keyword whose value is not UTF-8.
        keyword: String,
    },
    /// A value outside the keyword's set (`invalid sslmode value: "verify"`).
    #[error("invalid {keyword} value: \"{value}\" (valid values: {expected})")]
    InvalidValue {
        /// The keyword.
        keyword: &'static str,
        /// The rejected value (or, for `require_auth`, the rejected method).
        value: String,
        /// The values libpq accepts.
        expected: &'static str,
    },
    /// A value that must be an integer is not one (libpq's `pqParseIntParam`).
    #[error("invalid integer value \"{value}\" for connection option \"{keyword}\"")]
    InvalidInteger {
        /// The keyword.
        keyword: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A port outside 1..=65535.
    #[error("invalid port number: \"{value}\" (ports are 1 to 65535)")]
    InvalidPort {
        /// The rejected port.
        value: String,
    },
    /// `host` and `hostaddr` list different numbers of entries.
    #[error("could not match {hosts} host names to {hostaddrs} hostaddr values")]
    HostCountMismatch {
        /// Entries in `host`.
        hosts: usize,
        /// Entries in `hostaddr`.
        hostaddrs: usize,
    },
    /// `port` lists neither one port nor one per host.
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCountMismatch {
        /// Entries in `port`.
        ports: usize,
        /// Hosts (entries in `hostaddr`, else in `host`).
        hosts: usize,
    },
    /// `require_auth` mixes `!method` and `method` entries.
    #[error(
        "{}require_auth method \"{method}\" cannot be mixed with {} methods",
        mixed_prefix(.negated),
        mixed_other(.negated)
    )]
    RequireAuthMixed {
        /// The entry that broke the pattern, as written.
        method: String,
        /// Whether that entry is negated.
        negated: bool,
    },
    /// `require_auth` lists a method twice.
    #[error("require_auth method \"{method}\" is specified more than once")]
    RequireAuthDuplicate {
        /// The repeated entry, as written.
        method: String,
    },
    /// `ssl_min_protocol_version` is above `ssl_max_protocol_version`.
    #[error(
        "invalid SSL protocol version range: ssl_min_protocol_version \"{min}\" is above ssl_max_protocol_version \"{max}\""
    )]
    SslProtocolRange {
        /// The minimum (given, or libpq's default `TLSv1.2`).
        min: String,
        /// The maximum.
        max: String,
    },
    /// `min_protocol_version` is above `max_protocol_version`.
    #[error(
        "\"min_protocol_version\" \"{min}\" is greater than \"max_protocol_version\" \"{max}\""
    )]
    ProtocolVersionRange {
        /// The minimum.
        min: String,
        /// The maximum (given, or libpq's default `3.0`).
        max: String,
    },
    /// `scram_client_key`/`scram_server_key` is not base64 of a 32-byte key. The value is
    /// never shown.
    #[error("invalid {keyword}: expected the base64 encoding of a 32-byte key")]
    InvalidScramKey {
        /// `scram_client_key` or `scram_server_key`.
        keyword: &'static str,
    },
    /// A setting libpq honours but pgwarden cannot, refused rather than silently ignored
    /// (see [`ConnInfo::check_supported`](super::ConnInfo::check_supported)).
    #[error("{keyword}={value} is not supported by pgwarden: {reason}")]
    Unsupported {
        /// The keyword.
        keyword: &'static str,
        /// Its value, or `***` for a secret keyword (`scram_client_key`,
        /// `oauth_client_secret`, ...): the message never holds a secret.
        value: String,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// A combination of SSL settings libpq refuses (`sslrootcert=system` with a weak
    /// `sslmode`, `sslnegotiation=direct` with a mode that may fall back to plaintext).
    #[error(transparent)]
    Ssl {
        /// The rule that was broken.
        #[from]
        source: SslRuleError,
    },
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "thiserror passes fields by reference"
)]
fn mixed_prefix(negated: &bool) -> &'static str {
    if *negated { "negative " } else { "" }
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "thiserror passes fields by reference"
)]
fn mixed_other(negated: &bool) -> &'static str {
    if *negated { "non-negative" } else { "negative" }
}
