//! Resource ids, permission levels and access entries.

use pgwarden_core::resource::{AccessEntry, PermissionLevel, ResourceId, ResourceType};
use proptest::prelude::*;

#[test]
fn text_forms() {
    let cases = [
        ("postgresql-database:app", ResourceId::database("app")),
        ("postgresql-schema:app/s1", ResourceId::schema("app", "s1")),
        (
            "postgresql-table:app/s1/orders",
            ResourceId::table("app", "s1", "orders"),
        ),
        ("postgresql-role:analysts", ResourceId::role("analysts")),
        (
            "postgresql-table:a%2Fb/s%3Ac/t%25d",
            ResourceId::table("a/b", "s:c", "t%d"),
        ),
        (
            "postgresql-table:my db/\"Quoted\" Schema/Ordér ☃",
            ResourceId::table("my db", "\"Quoted\" Schema", "Ordér ☃"),
        ),
        (
            "postgresql-schema:app/semi;colon",
            ResourceId::schema("app", "semi;colon"),
        ),
        ("postgresql-role:a=b", ResourceId::role("a=b")),
        (
            "postgresql-role:line%0Abreak",
            ResourceId::role("line\nbreak"),
        ),
    ];
    for (text, id) in cases {
        assert_eq!(text.parse::<ResourceId>().unwrap(), id, "{text}");
        assert_eq!(id.to_string(), text, "{id:?}");
    }
    // Lowercase hex is accepted on input; output is canonical uppercase.
    let id: ResourceId = "postgresql-role:a%2fb".parse().unwrap();
    assert_eq!(id, ResourceId::role("a/b"));
    assert_eq!(id.to_string(), "postgresql-role:a%2Fb");
}

#[test]
fn sixty_three_byte_names() {
    let name = "é".repeat(31) + "x"; // 63 bytes
    assert_eq!(name.len(), 63);
    let id = ResourceId::table(&name, &name, &name);
    assert_eq!(id.to_string().parse::<ResourceId>().unwrap(), id);
    let too_long = format!("postgresql-role:{}", "a".repeat(64));
    let e = too_long.parse::<ResourceId>().unwrap_err().to_string();
    assert!(
        e.contains("64 bytes; PostgreSQL names have at most 63"),
        "{e}"
    );
}

#[test]
fn bad_ids() {
    let cases = [
        ("database:app", "expected postgresql-<type>:<path>"),
        ("postgresql-database", "expected postgresql-<type>:<path>"),
        ("postgresql-view:app/s/v", "unknown resource type \"view\""),
        ("postgresql-schema:app", "a schema id has two names"),
        ("postgresql-table:app/s", "a table id has three names"),
        ("postgresql-database:a/b", "a database id has one name"),
        ("postgresql-role:", "a name is empty"),
        ("postgresql-schema:app/", "a name is empty"),
        ("postgresql-role:100%", "'%' not followed by two hex digits"),
        ("postgresql-role:%zz", "'%' not followed by two hex digits"),
        ("postgresql-role:%FF", "does not decode to UTF-8"),
        ("postgresql-role:a%00", "NUL"),
    ];
    for (text, msg) in cases {
        let e = text.parse::<ResourceId>().unwrap_err().to_string();
        assert!(e.contains(msg), "{text}: {e}");
    }
}

#[test]
fn accessors() {
    let t = ResourceId::table("app", "s1", "orders");
    assert_eq!(t.resource_type(), ResourceType::Table);
    assert_eq!(t.database_name(), Some("app"));
    assert_eq!(t.schema_name(), Some("s1"));
    assert_eq!(t.name(), "orders");
    assert_eq!(t.parent(), Some(ResourceId::schema("app", "s1")));
    assert_eq!(
        t.parent().unwrap().parent(),
        Some(ResourceId::database("app"))
    );
    assert_eq!(ResourceId::database("app").parent(), None);
    assert_eq!(ResourceId::role("r").database_name(), None);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(json, "\"postgresql-table:app/s1/orders\"");
    assert_eq!(serde_json::from_str::<ResourceId>(&json).unwrap(), t);
}

#[test]
fn level_validity_for_every_pair() {
    use PermissionLevel as L;
    use ResourceType as T;
    let valid: &[(T, &[L])] = &[
        (
            T::Database,
            &[L::Connect, L::ReadOnly, L::ReadWrite, L::Admin],
        ),
        (T::Schema, &[L::ReadOnly, L::ReadWrite, L::Admin]),
        (
            T::Table,
            &[
                L::Select,
                L::Insert,
                L::Update,
                L::Delete,
                L::ReadOnly,
                L::ReadWrite,
                L::Admin,
            ],
        ),
        (T::Role, &[L::Member]),
    ];
    for (t, levels) in valid {
        for l in PermissionLevel::ALL {
            let ok = l.check_for(*t);
            assert_eq!(ok.is_ok(), levels.contains(&l), "{t} {l}");
            if let Err(e) = ok {
                let e = e.to_string();
                assert!(e.contains(&format!("not valid for a {t}")), "{e}");
                for v in *levels {
                    assert!(e.contains(v.as_str()), "{e} lacks {v}");
                }
            }
        }
    }
}

#[test]
fn level_parsing() {
    assert_eq!(
        "read-only".parse::<PermissionLevel>().unwrap(),
        PermissionLevel::ReadOnly
    );
    assert_eq!(
        "READ_WRITE".parse::<PermissionLevel>().unwrap(),
        PermissionLevel::ReadWrite
    );
    let e = "owner".parse::<PermissionLevel>().unwrap_err().to_string();
    assert!(
        e.contains("unknown permission level \"owner\"") && e.contains("read-only"),
        "{e}"
    );
    for l in PermissionLevel::ALL {
        assert_eq!(l.to_string().parse::<PermissionLevel>().unwrap(), l);
        assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
    }
}

#[test]
fn access_entries() {
    let e: AccessEntry = "postgresql-schema:app/s1=read-only".parse().unwrap();
    assert_eq!(e.resource, ResourceId::schema("app", "s1"));
    assert_eq!(e.level, PermissionLevel::ReadOnly);
    assert_eq!(e.to_string(), "postgresql-schema:app/s1=read-only");
    // The split is at the last '=': names may contain '='.
    let e: AccessEntry = "postgresql-role:a=b=member".parse().unwrap();
    assert_eq!(e.resource, ResourceId::role("a=b"));
    let bad = [
        ("postgresql-schema:app/s1", "expected <resource-id>=<level>"),
        (
            "postgresql-schema:app/s1=select",
            "not valid for a schema (valid levels for a schema: read-only, read-write, admin)",
        ),
        ("postgresql-role:r=admin", "valid levels for a role: member"),
        ("postgresql-database:app=owner", "unknown permission level"),
        ("nope=read-only", "expected postgresql-<type>:<path>"),
    ];
    for (text, msg) in bad {
        let err = text.parse::<AccessEntry>().unwrap_err().to_string();
        assert!(err.contains(msg), "{text}: {err}");
    }
    assert!(AccessEntry::new(ResourceId::role("r"), PermissionLevel::Select).is_err());
}

fn name() -> impl Strategy<Value = String> {
    // Any non-empty string without NUL, at most 63 bytes.
    "[^\u{0}]{1,40}".prop_filter("63 bytes", |s| s.len() <= 63)
}

fn resource_id() -> impl Strategy<Value = ResourceId> {
    prop_oneof![
        name().prop_map(ResourceId::database),
        (name(), name()).prop_map(|(d, s)| ResourceId::schema(d, s)),
        (name(), name(), name()).prop_map(|(d, s, t)| ResourceId::table(d, s, t)),
        name().prop_map(ResourceId::role),
    ]
}

proptest! {
    #[test]
    fn resource_ids_round_trip(id in resource_id()) {
        let text = id.to_string();
        prop_assert!(!text.contains('\n'));
        prop_assert_eq!(text.parse::<ResourceId>().unwrap(), id.clone());
        let level = id.resource_type().levels()[0];
        let entry = AccessEntry::new(id, level).unwrap();
        prop_assert_eq!(entry.to_string().parse::<AccessEntry>().unwrap(), entry);
    }
}
