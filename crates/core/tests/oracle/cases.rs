//! Connection strings shared by `tests/conninfo.rs` (expected results) and
//! `tests/conninfo_libpq.rs` (the same strings, checked against libpq itself).

#![allow(dead_code, reason = "each test binary uses part of the table")]

use pgwarden_core::conninfo::KEYWORDS;

/// Strings `PQconninfoParse` accepts, with the keywords and values it reports.
pub(crate) const PARSE_OK: &[(&str, &[(&str, &str)])] = &[
    // key=value basics and whitespace
    ("", &[]),
    ("   \t\n ", &[]),
    ("host=localhost", &[("host", "localhost")]),
    (
        "host=localhost port=5432 dbname=mydb user=me",
        &[
            ("host", "localhost"),
            ("port", "5432"),
            ("dbname", "mydb"),
            ("user", "me"),
        ],
    ),
    (
        "  host = localhost   port=  5433 ",
        &[("host", "localhost"), ("port", "5433")],
    ),
    (
        "host\t=\tdb\nport=1\r\x0bdbname=\x0cx",
        &[("host", "db"), ("port", "1"), ("dbname", "x")],
    ),
    ("host=h host=i", &[("host", "i")]),
    (
        "application_name= host=h",
        &[("application_name", "host=h")],
    ),
    ("application_name=", &[("application_name", "")]),
    (
        "application_name='' host=h",
        &[("application_name", ""), ("host", "h")],
    ),
    ("host='' port=''", &[("host", ""), ("port", "")]),
    // quoting and escapes
    (
        r"password='it\'s' user=u",
        &[("user", "u"), ("password", "it's")],
    ),
    ("dbname='my db'", &[("dbname", "my db")]),
    (r"dbname=my\ db", &[("dbname", "my db")]),
    (r"password=a\\b", &[("password", r"a\b")]),
    (r"host='a\b'", &[("host", "ab")]),
    ("host=a'b", &[("host", "a'b")]),
    (r"host=a\", &[("host", "a")]),
    (
        r"options='-c search_path=a,b -c work_mem=4MB'",
        &[("options", "-c search_path=a,b -c work_mem=4MB")],
    ),
    ("options='a'host=b", &[("host", "b"), ("options", "a")]),
    (
        "dbname='café' user=Ünïcødé",
        &[("user", "Ünïcødé"), ("dbname", "café")],
    ),
    (r"dbname=\'quoted\'", &[("dbname", "'quoted'")]),
    ("user=\"double\"", &[("user", "\"double\"")]),
    ("dbname='tab\there'", &[("dbname", "tab\there")]),
    (r"sslpassword='p w\\'", &[("sslpassword", r"p w\")]),
    // requiressl, translated by conninfo_storeval
    ("requiressl=1", &[("sslmode", "require")]),
    (
        "requiressl=0 host=a",
        &[("host", "a"), ("sslmode", "prefer")],
    ),
    ("sslmode=disable requiressl=1", &[("sslmode", "require")]),
    // values are not checked by the parser
    (
        "sslmode=bogus port=abc",
        &[("port", "abc"), ("sslmode", "bogus")],
    ),
    (
        "sslmode=verify-full sslrootcert=/etc/ca.pem sslcert=/c.pem sslkey=/k.pem sslpassword=kp",
        &[
            ("sslmode", "verify-full"),
            ("sslcert", "/c.pem"),
            ("sslkey", "/k.pem"),
            ("sslpassword", "kp"),
            ("sslrootcert", "/etc/ca.pem"),
        ],
    ),
    (
        "host=a,b,c hostaddr=10.0.0.1,10.0.0.2,10.0.0.3 port=1,2,3",
        &[
            ("host", "a,b,c"),
            ("hostaddr", "10.0.0.1,10.0.0.2,10.0.0.3"),
            ("port", "1,2,3"),
        ],
    ),
    (
        "keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=9000",
        &[
            ("keepalives", "1"),
            ("keepalives_idle", "30"),
            ("keepalives_interval", "10"),
            ("keepalives_count", "3"),
            ("tcp_user_timeout", "9000"),
        ],
    ),
    (
        "service=svc passfile=/pgpass channel_binding=require connect_timeout=5 client_encoding=UTF8",
        &[
            ("service", "svc"),
            ("passfile", "/pgpass"),
            ("channel_binding", "require"),
            ("connect_timeout", "5"),
            ("client_encoding", "UTF8"),
        ],
    ),
    (
        "fallback_application_name=fb replication=database gssencmode=disable krbsrvname=pg gsslib=gssapi",
        &[
            ("fallback_application_name", "fb"),
            ("gssencmode", "disable"),
            ("krbsrvname", "pg"),
            ("gsslib", "gssapi"),
            ("replication", "database"),
        ],
    ),
    (
        "sslcompression=0 sslcrl=/crl.pem sslcrldir=/crl sslsni=0 requirepeer=postgres",
        &[
            ("sslcompression", "0"),
            ("sslcrl", "/crl.pem"),
            ("sslcrldir", "/crl"),
            ("sslsni", "0"),
            ("requirepeer", "postgres"),
        ],
    ),
    (
        "ssl_min_protocol_version=TLSv1.2 ssl_max_protocol_version=TLSv1.3 target_session_attrs=read-write",
        &[
            ("ssl_min_protocol_version", "TLSv1.2"),
            ("ssl_max_protocol_version", "TLSv1.3"),
            ("target_session_attrs", "read-write"),
        ],
    ),
    // keywords newer than libpq 15
    (
        "sslnegotiation=direct sslcertmode=require require_auth=scram-sha-256 load_balance_hosts=random gssdelegation=1",
        &[
            ("sslnegotiation", "direct"),
            ("sslcertmode", "require"),
            ("require_auth", "scram-sha-256"),
            ("gssdelegation", "1"),
            ("load_balance_hosts", "random"),
        ],
    ),
    (
        "min_protocol_version=3.0 max_protocol_version=latest sslkeylogfile=/tmp/keys",
        &[
            ("min_protocol_version", "3.0"),
            ("max_protocol_version", "latest"),
            ("sslkeylogfile", "/tmp/keys"),
        ],
    ),
    (
        "oauth_issuer=https://issuer.example oauth_client_id=cid oauth_client_secret=cs oauth_scope='openid email'",
        &[
            ("oauth_issuer", "https://issuer.example"),
            ("oauth_client_id", "cid"),
            ("oauth_client_secret", "cs"),
            ("oauth_scope", "openid email"),
        ],
    ),
    (
        "scram_client_key=Y2xpZW50 scram_server_key=c2VydmVy",
        &[
            ("scram_client_key", "Y2xpZW50"),
            ("scram_server_key", "c2VydmVy"),
        ],
    ),
    // URIs
    ("postgresql://", &[]),
    ("postgres://", &[]),
    ("postgresql://localhost", &[("host", "localhost")]),
    (
        "postgresql://localhost:5433",
        &[("host", "localhost"), ("port", "5433")],
    ),
    (
        "postgresql://localhost/mydb",
        &[("dbname", "mydb"), ("host", "localhost")],
    ),
    (
        "postgresql://user@localhost",
        &[("user", "user"), ("host", "localhost")],
    ),
    (
        "postgresql://user:secret@localhost",
        &[
            ("user", "user"),
            ("password", "secret"),
            ("host", "localhost"),
        ],
    ),
    (
        "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
        &[
            ("user", "other"),
            ("connect_timeout", "10"),
            ("dbname", "otherdb"),
            ("host", "localhost"),
            ("application_name", "myapp"),
        ],
    ),
    (
        "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
        &[
            ("dbname", "somedb"),
            ("host", "host1,host2"),
            ("port", "123,456"),
            ("application_name", "myapp"),
            ("target_session_attrs", "any"),
        ],
    ),
    (
        "postgresql://[::1]:5432/db",
        &[("dbname", "db"), ("host", "::1"), ("port", "5432")],
    ),
    (
        "postgresql://[2001:db8::1234]/database",
        &[("dbname", "database"), ("host", "2001:db8::1234")],
    ),
    (
        "postgresql://[::1],[::2]:5433",
        &[("host", "::1,::2"), ("port", ",5433")],
    ),
    ("postgresql://h1,h2", &[("host", "h1,h2"), ("port", ",")]),
    (
        "postgresql://h1:5432,h2",
        &[("host", "h1,h2"), ("port", "5432,")],
    ),
    (
        "postgresql:///mydb?host=/var/run/postgresql",
        &[("dbname", "mydb"), ("host", "/var/run/postgresql")],
    ),
    (
        "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
        &[("dbname", "dbname"), ("host", "/var/lib/postgresql")],
    ),
    (
        "postgresql://us%40er:p%40ss%3Aw@host/d%20b",
        &[
            ("user", "us@er"),
            ("password", "p@ss:w"),
            ("dbname", "d b"),
            ("host", "host"),
        ],
    ),
    (
        "postgresql://host/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem",
        &[
            ("dbname", "db"),
            ("host", "host"),
            ("sslmode", "require"),
            ("sslrootcert", "/etc/ca.pem"),
        ],
    ),
    (
        "postgresql://host/db?ssl=true",
        &[("dbname", "db"), ("host", "host"), ("sslmode", "require")],
    ),
    (
        "postgresql://:pw@host",
        &[("password", "pw"), ("host", "host")],
    ),
    (
        "postgresql://user:@host",
        &[("user", "user"), ("host", "host")],
    ),
    ("postgresql://host/", &[("host", "host")]),
    ("postgresql://host?", &[("host", "host")]),
    (
        "postgresql://host/db?application_name=caf%C3%A9",
        &[
            ("dbname", "db"),
            ("host", "host"),
            ("application_name", "café"),
        ],
    ),
    (
        "postgresql://host?user=a@b",
        &[("user", "host?user=a"), ("host", "b")],
    ),
    (
        "postgresql://h/db?requiressl=1",
        &[("dbname", "db"), ("host", "h"), ("sslmode", "require")],
    ),
    (
        "postgresql://h/db?options=-c%20search_path%3Dfoo",
        &[
            ("dbname", "db"),
            ("host", "h"),
            ("options", "-c search_path=foo"),
        ],
    ),
    ("postgresql://h:/db", &[("dbname", "db"), ("host", "h")]),
    (
        "postgresql://u:p@h:5432/db?sslmode=disable&host=other",
        &[
            ("user", "u"),
            ("password", "p"),
            ("dbname", "db"),
            ("host", "other"),
            ("port", "5432"),
            ("sslmode", "disable"),
        ],
    ),
    (
        "postgresql://h/db?password=x%20y",
        &[("password", "x y"), ("dbname", "db"), ("host", "h")],
    ),
    (
        "postgres://u:p:q@h",
        &[("user", "u"), ("password", "p:q"), ("host", "h")],
    ),
    ("postgresql://a@b@c", &[("user", "a"), ("host", "b@c")]),
    ("postgresql://h//db", &[("dbname", "/db"), ("host", "h")]),
    (
        "postgresql://h:1:2/db",
        &[("dbname", "db"), ("host", "h"), ("port", "1:2")],
    ),
    (
        "postgresql://h?dbname=x&dbname=y",
        &[("dbname", "y"), ("host", "h")],
    ),
    ("postgresql://,", &[("host", ","), ("port", ",")]),
    ("postgresql://h/%7e%7E", &[("dbname", "~~"), ("host", "h")]),
    (
        "postgresql://[fe80::1%25eth0]/db",
        &[("dbname", "db"), ("host", "fe80::1%eth0")],
    ),
    (
        "postgresql://h/db?sslnegotiation=direct&sslmode=require",
        &[
            ("dbname", "db"),
            ("host", "h"),
            ("sslmode", "require"),
            ("sslnegotiation", "direct"),
        ],
    ),
];

/// Strings `PQconninfoParse` rejects, with our message.
pub(crate) const PARSE_ERR: &[(&str, &str)] = &[
    (
        "host",
        r#"missing "=" after "host" in connection info string"#,
    ),
    (
        "host localhost",
        r#"missing "=" after "host" in connection info string"#,
    ),
    (
        "postgresql:/host",
        r#"missing "=" after "postgresql:/host" in connection info string"#,
    ),
    ("hots=x", r#"invalid connection option "hots""#),
    ("Host=x", r#"invalid connection option "Host""#),
    ("=x", r#"invalid connection option """#),
    (
        "sslnegotiaton=direct",
        r#"invalid connection option "sslnegotiaton""#,
    ),
    ("host='x'y=z", r#"invalid connection option "y""#),
    (
        "host='unterminated",
        "unterminated quoted string in connection info string",
    ),
    (
        r"host='a\'",
        "unterminated quoted string in connection info string",
    ),
    (
        "host=a password='x",
        "unterminated quoted string in connection info string",
    ),
    (
        "password=my secret host=h",
        r#"missing "=" after "***" in connection info string"#,
    ),
    ("password=my secret=x", r#"invalid connection option "***""#),
    (
        "postgresql://h/db?hots=x",
        r#"invalid URI query parameter: "hots""#,
    ),
    (
        "postgresql://h/db?sslmode",
        r#"missing key/value separator "=" in URI query parameter: "sslmode""#,
    ),
    (
        "postgresql://h/db?&",
        r#"missing key/value separator "=" in URI query parameter: """#,
    ),
    (
        "postgresql://h/db?a=b=c",
        r#"extra key/value separator "=" in URI query parameter: "a""#,
    ),
    (
        "postgresql://h/db?ssl=false",
        r#"invalid URI query parameter: "ssl""#,
    ),
    (
        "postgresql://[::1",
        r#"end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://[::1""#,
    ),
    (
        "postgresql://u:hunter2@[::1",
        r#"end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://u:***@[::1""#,
    ),
    (
        "postgresql://[]/db",
        r#"IPv6 host address may not be empty in URI: "postgresql://[]/db""#,
    ),
    (
        "postgresql://[::1]x/db",
        r#"unexpected character "x" at position 19 in URI (expected ":" or "/"): "postgresql://[::1]x/db""#,
    ),
    (
        "postgresql://h/d%zzb",
        r#"invalid percent-encoded token in "dbname": "d%zzb""#,
    ),
    (
        "postgresql://h/db%0",
        r#"invalid percent-encoded token in "dbname": "db%0""#,
    ),
    (
        "postgresql://h/d%00b",
        r#"forbidden value %00 in percent-encoded value of "dbname": "d%00b""#,
    ),
    (
        "postgresql://u:s%zzt@h",
        r#"invalid percent-encoded token in "password": "***""#,
    ),
    (
        "postgresql://h/db?password=a%zz",
        r#"invalid percent-encoded token in "password": "***""#,
    ),
    (
        "postgresql://h/db?a%zz=1",
        r#"invalid percent-encoded token in "query parameter name": "a%zz""#,
    ),
    // PostgreSQL 17+ rejects inner spaces in URI parts (libpq 15 keeps them).
    (
        "postgresql://h/d b",
        r#"unexpected spaces found in "d b" (value of "dbname"), use percent-encoded spaces (%20) instead"#,
    ),
    (
        "postgresql://h1, h2/db",
        r#"unexpected spaces found in "h1, h2" (value of "host")"#,
    ),
    // libpq accepts bytes that are not UTF-8; pgwarden keeps values as Rust strings.
    (
        "postgresql://h/db?application_name=%C3",
        r#"percent-decoded value of "application_name" is not valid UTF-8"#,
    ),
    (
        "host=h\0port=1",
        "connection info string contains a NUL character at byte 6",
    ),
];

/// Strings that parse but that libpq refuses when it connects, with our message. The hosts are
/// loopback addresses so that the libpq oracle can try them without waiting on DNS.
pub(crate) const VALIDATE_ERR: &[(&str, &str)] = &[
    (
        "host=127.0.0.1 sslmode=bogus",
        r#"invalid sslmode value: "bogus""#,
    ),
    (
        "host=127.0.0.1 sslmode=Require",
        r#"invalid sslmode value: "Require""#,
    ),
    ("host=127.0.0.1 sslmode=''", r#"invalid sslmode value: """#),
    (
        "postgresql://127.0.0.1/db?sslmode=verify",
        r#"invalid sslmode value: "verify""#,
    ),
    (
        "host=127.0.0.1 gssencmode=maybe",
        r#"invalid gssencmode value: "maybe""#,
    ),
    (
        "host=127.0.0.1 channel_binding=yes",
        r#"invalid channel_binding value: "yes""#,
    ),
    (
        "host=127.0.0.1 target_session_attrs=primary-ish",
        r#"invalid target_session_attrs value: "primary-ish""#,
    ),
    (
        "host=127.0.0.1 load_balance_hosts=sometimes",
        r#"invalid load_balance_hosts value: "sometimes""#,
    ),
    (
        "host=127.0.0.1 sslcertmode=maybe",
        r#"invalid sslcertmode value: "maybe""#,
    ),
    (
        "host=127.0.0.1 sslnegotiation=fast",
        r#"invalid sslnegotiation value: "fast""#,
    ),
    (
        "host=127.0.0.1 require_auth=kerberos",
        r#"invalid require_auth value: "kerberos""#,
    ),
    (
        "host=127.0.0.1 require_auth=password,!md5",
        r#"negative require_auth method "!md5" cannot be mixed with non-negative methods"#,
    ),
    (
        "host=127.0.0.1 require_auth=!md5,password",
        r#"require_auth method "password" cannot be mixed with negative methods"#,
    ),
    (
        "host=127.0.0.1 require_auth=md5,md5",
        r#"require_auth method "md5" is specified more than once"#,
    ),
    (
        "host=127.0.0.1 require_auth=!none,!none",
        r#"require_auth method "!none" is specified more than once"#,
    ),
    (
        "host=127.0.0.1 ssl_min_protocol_version=TLSv2",
        r#"invalid ssl_min_protocol_version value: "TLSv2""#,
    ),
    (
        "host=127.0.0.1 ssl_max_protocol_version=TLSv1.1",
        "invalid SSL protocol version range",
    ),
    (
        "host=127.0.0.1 ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
        "invalid SSL protocol version range",
    ),
    (
        "host=127.0.0.1,127.0.0.2 port=1,2,3",
        "could not match 3 port numbers to 2 hosts",
    ),
    (
        "host=127.0.0.1 port=5432,5433",
        "could not match 2 port numbers to 1 hosts",
    ),
    (
        "host=a,b hostaddr=127.0.0.1",
        "could not match 2 host names to 1 hostaddr values",
    ),
    (
        "host=127.0.0.1 port=abc",
        r#"invalid integer value "abc" for connection option "port""#,
    ),
    (
        "host=127.0.0.1 port=99999",
        r#"invalid port number: "99999""#,
    ),
    ("host=127.0.0.1 port=0", r#"invalid port number: "0""#),
    (
        "host=127.0.0.1 keepalives=yes",
        r#"invalid integer value "yes" for connection option "keepalives""#,
    ),
    (
        "host=127.0.0.1 tcp_user_timeout=1.5",
        r#"invalid integer value "1.5" for connection option "tcp_user_timeout""#,
    ),
    (
        "host=127.0.0.1 connect_timeout=soon",
        r#"invalid integer value "soon" for connection option "connect_timeout""#,
    ),
    (
        "host=127.0.0.1 sslrootcert=system sslmode=require",
        r#"weak sslmode "require" may not be used with sslrootcert=system"#,
    ),
    (
        "host=127.0.0.1 sslnegotiation=direct",
        r#"weak sslmode "prefer" may not be used with sslnegotiation=direct"#,
    ),
    (
        "host=127.0.0.1 min_protocol_version=3.1",
        r#"invalid min_protocol_version value: "3.1""#,
    ),
    (
        "host=127.0.0.1 min_protocol_version=3.2 max_protocol_version=3.0",
        r#""min_protocol_version" "3.2" is greater than "max_protocol_version" "3.0""#,
    ),
    (
        "host=127.0.0.1 scram_client_key=abc",
        "invalid scram_client_key: expected the base64 encoding of a 32-byte key",
    ),
];

/// Strings that pass every check.
pub(crate) const VALIDATE_OK: &[&str] = &[
    "host=127.0.0.1",
    "host=127.0.0.1 sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
    "host=127.0.0.1,127.0.0.1 port=5432,5433",
    "host=127.0.0.1 port=''",
    "host=127.0.0.1 port=' 5432 '",
    "host=localhost require_auth=!password,!md5",
    "host=127.0.0.1 require_auth=none",
    "host=127.0.0.1 require_auth=''",
    "host=127.0.0.1 ssl_min_protocol_version=tlsv1.3",
    "host=127.0.0.1 ssl_min_protocol_version='' ssl_max_protocol_version=TLSv1",
    "host=127.0.0.1 ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1",
    "hostaddr=127.0.0.1 host=db.example.com",
    "hostaddr=127.0.0.1,127.0.0.1 host=a,''",
    "host=127.0.0.1 connect_timeout=' 10 '",
    "host=127.0.0.1 keepalives=0 keepalives_idle=-5",
    "host=127.0.0.1 target_session_attrs=prefer-standby",
    "host=127.0.0.1 gssencmode=disable channel_binding=disable",
    "host=127.0.0.1 sslrootcert=system",
    "host=127.0.0.1 sslrootcert=system sslnegotiation=direct",
    "host=127.0.0.1 sslmode=require sslnegotiation=direct",
    "host=127.0.0.1 sslcertmode=allow load_balance_hosts=random",
    "postgresql://127.0.0.1:5432,127.0.0.1:5433/db?target_session_attrs=read-write",
    "postgresql://127.0.0.1/db?ssl=true",
    "host=127.0.0.1 min_protocol_version=latest",
    "host=127.0.0.1 max_protocol_version=3.2",
    "host=127.0.0.1 scram_client_key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "host=127.0.0.1 sslmode=disable requiressl=1",
];

/// `keyword=value` for every keyword libpq 18 knows, with a value made from the keyword.
pub(crate) fn every_keyword() -> Vec<(String, &'static str)> {
    KEYWORDS
        .iter()
        .map(|k| (format!("{}=v_{}", k.name, k.name), k.name))
        .collect()
}

/// More strings for the oracle only: edge cases whose answer libpq decides.
pub(crate) const ORACLE_EXTRA: &[&str] = &[
    r"dbname=a\ b\'c",
    "host=\t\n",
    "host= ",
    "host =",
    " = ",
    "host=a=b",
    "host=''''",
    r"host='\\'",
    r"host=\\\\",
    "host='a' 'b'",
    "postgresql://user@",
    "postgresql://@h",
    "postgresql://h,",
    "postgresql://[::1]:x",
    "postgresql://[::1]:",
    "postgresql://h/db#frag",
    "postgresql://h/db?options=a%3Db",
    "postgresql://h/db?&a=b",
    "postgresql://h/db?user=%20x",
    "postgresql://h/db?%75ser=x",
    "postgresql://h/db??",
    "postgresql://h/db?application_name=",
    "postgresql://h/db?requiressl=0",
    "postgresql://h/db?sslmode=require&ssl=true",
    "postgresql://u%3Ax@h",
    "postgresql://h:5432,",
    "postgresql://[::1]a",
    "postgresql://[[::1]]",
    "postgresql://h/d%2",
    "postgresql://h/d%g0",
    "postgresql://h/d%",
    "postgresqlx://h",
    "postgresql:/",
    "POSTGRESQL://h",
    "postgres://h/db?host=a,b&port=1,2",
    "user=a password=b dbname=c host=d port=e",
];
