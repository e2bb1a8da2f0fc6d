//! PAM (`--server-auth=pam:`): Unix only, and only in builds with the
//! `pam` feature (the default). Elsewhere `pam:` is refused at startup
//! ([`AVAILABLE`] is false), as 2.6.1 refuses it on Windows.

#[cfg(all(unix, feature = "pam"))]
mod unix;
#[cfg(all(unix, feature = "pam"))]
pub use unix::authenticate;

/// Whether `pam:` can work in this build on this system.
pub const AVAILABLE: bool = cfg!(all(unix, feature = "pam"));

/// Refuses: no PAM in this build or on this system.
#[cfg(not(all(unix, feature = "pam")))]
pub fn authenticate(_service: &str, _user: &str, _password: &str) -> Result<bool, String> {
    Err("this build has no PAM support".into())
}
