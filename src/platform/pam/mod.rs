//! PAM (`--server-auth=pam:`): Unix only, and only in builds with the
//! `pam` feature (the default). Elsewhere `pam:` is refused at startup
//! ([`AVAILABLE`] is false), as 2.6.1 refuses it on Windows.

#[cfg(all(unix, feature = "pam"))]
mod unix;
#[cfg(all(unix, feature = "pam"))]
pub use unix::authenticate;

/// Why PAM could not answer (wrong credentials are not an error).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PamError {
    /// No PAM in this build or on this system.
    #[error("this build has no PAM support")]
    Unsupported,
    /// The PAM library cannot be loaded, or lacks an entry point.
    #[error("{0}")]
    Library(String),
    /// A name that cannot be handed to PAM.
    #[error("a NUL in the name or password")]
    Nul,
    /// `pam_start` refused the service.
    #[error("pam_start failed for service \"{service}\": code {code}")]
    Start { service: String, code: i32 },
    /// The service answered with an error of its own.
    #[error("service \"{service}\": {reason}")]
    Service { service: String, reason: String },
    /// The check's thread ended without an answer.
    #[error("{0}")]
    Task(String),
}

/// Whether `pam:` can work in this build on this system.
pub const AVAILABLE: bool = cfg!(all(unix, feature = "pam"));

/// Refuses: no PAM in this build or on this system.
#[cfg(not(all(unix, feature = "pam")))]
pub fn authenticate(_service: &str, _user: &str, _password: &str) -> Result<bool, PamError> {
    Err(PamError::Unsupported)
}
