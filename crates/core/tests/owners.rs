//! Owner resolution: tag inheritance, fallback, unknown names, missing integration owner.

use std::sync::Arc;

use pgwarden_core::owners::{
    FallbackCause, InMemoryDirectory, IntegrationOwner, OwnerAttribute, OwnerError, OwnerResolver,
    ResolutionReason, ResourceOwnerSetting,
};
use pgwarden_core::resource::ResourceId;
use pgwarden_core::tags::InMemoryTagSource;

fn dba() -> Vec<IntegrationOwner> {
    vec![IntegrationOwner {
        source: "okta".into(),
        attribute: OwnerAttribute::Group,
        values: vec!["dba".into()],
    }]
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "the resolver takes the setting as an Option"
)]
fn owner_tag() -> Option<ResourceOwnerSetting> {
    Some(ResourceOwnerSetting {
        key: "owner".into(),
        source: "okta".into(),
        attribute: OwnerAttribute::Group,
    })
}

fn directory() -> Arc<InMemoryDirectory> {
    Arc::new(
        InMemoryDirectory::new("okta")
            .with_group("dba", &["carol"])
            .with_group("payments", &["bob", "erin"])
            .with_group("core", &["dave"]),
    )
}

fn setup() -> (Arc<InMemoryTagSource>, OwnerResolver) {
    let tags = Arc::new(InMemoryTagSource::new());
    tags.set_comment(ResourceId::database("app"), "Main app. owner=core");
    tags.set_comment(ResourceId::schema("app", "billing"), "owner=payments");
    tags.set_comment(
        ResourceId::table("app", "billing", "ledger"),
        "owner=dba,ghosts",
    );
    tags.set_comment(
        ResourceId::table("app", "billing", "orphan"),
        "owner=ghosts",
    );
    tags.set_comment(ResourceId::role("analysts"), "owner=payments");
    let r = OwnerResolver::new(dba(), owner_tag(), tags.clone(), vec![directory()]).unwrap();
    (tags, r)
}

fn found_on(r: &ResolutionReason) -> Option<&ResourceId> {
    match r {
        ResolutionReason::ResourceOwnerTag { found_on, .. } => Some(found_on),
        _ => None,
    }
}

#[tokio::test]
async fn tags_inherit_table_from_schema_from_database() {
    let (_, r) = setup();
    // Tag on the schema decides for its tables.
    let res = r
        .resolve(&ResourceId::table("app", "billing", "invoices"))
        .await
        .unwrap();
    assert_eq!(res.approvers.len(), 1);
    assert_eq!(res.approvers[0].value, "payments");
    let people: Vec<_> = res.approvers[0]
        .people
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(people, ["bob", "erin"]);
    assert_eq!(
        found_on(&res.reason),
        Some(&ResourceId::schema("app", "billing"))
    );
    // Database tag decides for an untagged schema and its tables.
    let res = r
        .resolve(&ResourceId::table("app", "public", "t"))
        .await
        .unwrap();
    assert_eq!(res.approvers[0].value, "core");
    assert_eq!(found_on(&res.reason), Some(&ResourceId::database("app")));
    // The resource's own tag wins over its parents'.
    let res = r
        .resolve(&ResourceId::schema("app", "billing"))
        .await
        .unwrap();
    assert_eq!(
        found_on(&res.reason),
        Some(&ResourceId::schema("app", "billing"))
    );
    // Roles carry their own tags.
    let res = r.resolve(&ResourceId::role("analysts")).await.unwrap();
    assert_eq!(res.approvers[0].value, "payments");
}

#[tokio::test]
async fn unknown_names_are_reported_and_known_ones_kept() {
    let (_, r) = setup();
    let res = r
        .resolve(&ResourceId::table("app", "billing", "ledger"))
        .await
        .unwrap();
    assert_eq!(res.approvers.len(), 1);
    assert_eq!(res.approvers[0].value, "dba");
    assert_eq!(res.unknown, ["okta:group:ghosts"]);
}

#[tokio::test]
async fn falls_back_to_integration_owners() {
    let (_, r) = setup();
    // No tag anywhere up the chain.
    let res = r
        .resolve(&ResourceId::table("other", "s", "t"))
        .await
        .unwrap();
    assert_eq!(res.approvers[0].value, "dba");
    assert_eq!(
        res.reason,
        ResolutionReason::IntegrationOwnerFallback {
            because: FallbackCause::NoTag {
                key: "owner".into()
            }
        }
    );
    // A tag that names nobody known.
    let res = r
        .resolve(&ResourceId::table("app", "billing", "orphan"))
        .await
        .unwrap();
    assert_eq!(res.approvers[0].value, "dba");
    assert!(matches!(
        res.reason,
        ResolutionReason::IntegrationOwnerFallback { because: FallbackCause::TagNamesNobody { ref value, .. } } if value == "ghosts"
    ));
    assert_eq!(res.unknown, ["okta:group:ghosts"]);
    // No resource-owner setting at all.
    let (tags, _) = setup();
    let r = OwnerResolver::new(dba(), None, tags, vec![directory()]).unwrap();
    let res = r
        .resolve(&ResourceId::schema("app", "billing"))
        .await
        .unwrap();
    assert_eq!(
        res.reason,
        ResolutionReason::IntegrationOwnerFallback {
            because: FallbackCause::NoResourceOwnerSetting
        }
    );
}

#[tokio::test]
async fn nobody_when_no_owner_is_known() {
    let tags = Arc::new(InMemoryTagSource::new());
    let r = OwnerResolver::new(Vec::new(), None, tags.clone(), vec![directory()]).unwrap();
    let res = r.resolve(&ResourceId::database("app")).await.unwrap();
    assert!(res.approvers.is_empty());
    assert!(matches!(res.reason, ResolutionReason::Nobody { .. }));
    let ghosts = vec![IntegrationOwner {
        source: "okta".into(),
        attribute: OwnerAttribute::User,
        values: vec!["nobody".into()],
    }];
    let r = OwnerResolver::new(ghosts, None, tags, vec![directory()]).unwrap();
    let res = r.resolve(&ResourceId::database("app")).await.unwrap();
    assert!(matches!(res.reason, ResolutionReason::Nobody { .. }));
    assert_eq!(res.unknown, ["okta:user:nobody"]);
}

#[tokio::test]
async fn resource_owner_needs_an_integration_owner() {
    let tags = Arc::new(InMemoryTagSource::new());
    let e = OwnerResolver::new(Vec::new(), owner_tag(), tags, vec![]).unwrap_err();
    assert_eq!(e, OwnerError::ResourceOwnerWithoutIntegrationOwner);
    assert!(
        e.to_string()
            .contains("add at least one [[integration_owners]]")
    );
}

#[tokio::test]
async fn without_a_directory_names_are_unchecked() {
    let (tags, _) = setup();
    let r = OwnerResolver::new(dba(), owner_tag(), tags, vec![]).unwrap();
    let res = r
        .resolve(&ResourceId::table("app", "billing", "orphan"))
        .await
        .unwrap();
    assert_eq!(res.approvers[0].value, "ghosts");
    assert_eq!(res.approvers[0].people, None);
    assert!(res.unknown.is_empty());
}
