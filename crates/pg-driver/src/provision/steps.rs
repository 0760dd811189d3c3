//! Test hooks: a grant or revocation stopped at a named step, as if the process died
//! there (feature `testing`; without it, [`Provisioner::step`] does nothing).

#[cfg(feature = "testing")]
use std::sync::Arc;

use super::Provisioner;
use crate::error::ProvisionError;

/// A step of a grant or revocation, for fault injection in tests: a hook that
/// fails at a step makes the operation stop there, as if the process died.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    not(feature = "testing"),
    allow(
        unreachable_pub,
        dead_code,
        reason = "public with the testing feature; without it, only named"
    )
)]
pub enum Step {
    /// Before privilege roles are created.
    GrantPrivilegeRoles,
    /// Before the login role is created.
    GrantLoginRole,
    /// Before a grant with an explicit id (or a persistent grant) commits, holding
    /// the grant id's lock.
    GrantCommit,
    /// Before the grant is marked revoking and its role set NOLOGIN.
    RevokeMark,
    /// Before sessions are ended.
    RevokeTerminateSessions,
    /// Before memberships are removed.
    RevokeMemberships,
    /// Before owned objects and privileges are removed in this database.
    RevokeCleanDatabase(String),
    /// Before the role is dropped.
    RevokeDropRole,
}

/// A fault-injection hook (see [`Step`]).
#[cfg(feature = "testing")]
pub type StepHook = Arc<dyn Fn(&Step) -> Result<(), String> + Send + Sync>;

impl Provisioner {
    /// Installs a fault-injection hook (tests).
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn with_step_hook(mut self, hook: StepHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Reached `step`: a hook that fails there stops the operation
    /// ([`ProvisionError::Injected`]).
    #[cfg(feature = "testing")]
    pub(crate) fn step(&self, step: Step) -> Result<(), ProvisionError> {
        match &self.hook {
            Some(hook) => hook(&step).map_err(|message| ProvisionError::Injected { step, message }),
            None => Ok(()),
        }
    }

    /// Reached `step`: nothing to do without the `testing` feature.
    #[cfg(not(feature = "testing"))]
    #[allow(
        clippy::unused_self,
        clippy::needless_pass_by_value,
        clippy::unnecessary_wraps,
        reason = "the same signature as with the testing feature"
    )]
    #[inline]
    pub(crate) fn step(&self, step: Step) -> Result<(), ProvisionError> {
        let _ = step;
        Ok(())
    }
}
