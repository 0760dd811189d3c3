//! Names pgwarden gives the roles it manages, shared by every crate that must
//! recognise them (provisioning creates them, discovery leaves them out).

/// The NOLOGIN role every login role pgwarden creates is a member of. The ledger
/// finds managed roles through it, never by guessing from names.
pub const MARKER_ROLE: &str = "pgwarden_managed";

/// The NOLOGIN role whose members are the login roles that cannot be found by name
/// from a grant id: persistent roles (several grants each) and login roles made before
/// ephemeral roles were named by their grant id. Finding a grant reads its members
/// and the one range of names its id's tag gives, never every managed role.
pub const UNTAGGED_ROLE: &str = "pgwarden_managed_untagged";

/// Prefix of the NOLOGIN roles that register a `username_prefix` (the rest of the
/// name): ephemeral login roles are named `<username_prefix><grant id tag>_<requester>`,
/// and finding a grant reads that name range under every registered prefix.
pub const NAMES_ROLE_PREFIX: &str = "pgwarden_managed_names_";

/// Prefix of privilege roles: NOLOGIN roles holding one (resource, level) privilege set.
pub const PRIVILEGE_ROLE_PREFIX: &str = "pgwarden_p_";

/// Whether a role name is one of pgwarden's own bookkeeping roles (the marker, a role
/// named after it such as [`UNTAGGED_ROLE`], or a privilege role). Login roles are
/// recognised by membership in [`MARKER_ROLE`].
#[must_use]
pub fn is_bookkeeping_role(name: &str) -> bool {
    name.strip_prefix(MARKER_ROLE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
        || name.starts_with(PRIVILEGE_ROLE_PREFIX)
}

/// The role registering `username_prefix` (see [`NAMES_ROLE_PREFIX`]).
#[must_use]
pub fn names_role(username_prefix: &str) -> String {
    format!("{NAMES_ROLE_PREFIX}{username_prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_roles_are_recognised_by_name() {
        for name in [
            MARKER_ROLE,
            UNTAGGED_ROLE,
            "pgwarden_p_abc",
            &names_role("pgw_"),
        ] {
            assert!(is_bookkeeping_role(name), "{name}");
        }
        for name in ["pgwarden_managedx", "pgw_alice", "pgwarden"] {
            assert!(!is_bookkeeping_role(name), "{name}");
        }
    }
}
