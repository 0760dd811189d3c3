//! Names pgwarden gives the roles it manages, shared by every crate that must
//! recognise them (provisioning creates them, discovery leaves them out).

/// The NOLOGIN role every login role pgwarden creates is a member of. The ledger
/// finds managed roles through it, never by guessing from names.
pub const MARKER_ROLE: &str = "pgwarden_managed";

/// Prefix of privilege roles: NOLOGIN roles holding one (resource, level) privilege set.
pub const PRIVILEGE_ROLE_PREFIX: &str = "pgwarden_p_";

/// Whether a role name is one of pgwarden's own bookkeeping roles (the marker or a
/// privilege role). Login roles are recognised by membership in [`MARKER_ROLE`].
#[must_use]
pub fn is_bookkeeping_role(name: &str) -> bool {
    name == MARKER_ROLE || name.starts_with(PRIVILEGE_ROLE_PREFIX)
}
