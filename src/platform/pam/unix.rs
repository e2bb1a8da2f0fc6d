//! PAM (`--server-auth=pam:`): a user name and password checked by the
//! system's PAM service `emailrelay`, with `pam_authenticate` then
//! `pam_acct_mgmt`.
//!
//! libpam is loaded at run time with dlopen rather than linked, so the
//! relay builds on a machine without libpam's development files (the
//! README's first command) and starts on one without libpam at all; only
//! `pam:` then fails, with a clear message. This module holds all of the
//! crate's PAM `unsafe`, and is called from a blocking thread.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use super::PamError;

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_PERM_DENIED: c_int = 6;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CRED_INSUFFICIENT: c_int = 8;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_MAXTRIES: c_int = 11;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_ACCT_EXPIRED: c_int = 13;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct Message {
    style: c_int,
    text: *const c_char,
}

#[repr(C)]
struct Response {
    text: *mut c_char,
    code: c_int,
}

type ConvFn = extern "C" fn(c_int, *mut *const Message, *mut *mut Response, *mut c_void) -> c_int;

#[repr(C)]
struct Conversation {
    conv: ConvFn,
    data: *mut c_void,
}

type StartFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const Conversation,
    *mut *mut c_void,
) -> c_int;
type HandleFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type StrErrorFn = unsafe extern "C" fn(*mut c_void, c_int) -> *const c_char;

/// The libpam entry points.
struct Library {
    start: StartFn,
    authenticate: HandleFn,
    acct_mgmt: HandleFn,
    end: HandleFn,
    strerror: StrErrorFn,
}

/// Checks `user` and `password` with the PAM `service`: `Ok(false)` for
/// wrong credentials, `Err` when PAM itself cannot answer.
pub fn authenticate(service: &str, user: &str, password: &str) -> Result<bool, PamError> {
    let lib = library()?;
    let to_c = |s: &str| CString::new(s).map_err(|_| PamError::Nul);
    let (service_c, user_c) = (to_c(service)?, to_c(user)?);
    let Ok(password_c) = CString::new(password) else {
        return Ok(false);
    };
    let mut secrets = (user_c.clone(), password_c);
    let conversation = Conversation {
        conv: converse,
        data: std::ptr::addr_of_mut!(secrets).cast(),
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: the strings and the conversation outlive the handle, which
    // pam_end releases before they drop.
    let rc = unsafe {
        (lib.start)(
            service_c.as_ptr(),
            user_c.as_ptr(),
            &conversation,
            &mut handle,
        )
    };
    if rc != PAM_SUCCESS || handle.is_null() {
        return Err(PamError::Start {
            service: service.to_string(),
            code: rc,
        });
    }
    // SAFETY: `handle` is live until pam_end below.
    let rc = unsafe {
        let mut rc = (lib.authenticate)(handle, 0);
        if rc == PAM_SUCCESS {
            rc = (lib.acct_mgmt)(handle, 0);
        }
        rc
    };
    // SAFETY: as above; strerror's text is static in Linux-PAM.
    let reason = unsafe { CStr::from_ptr((lib.strerror)(handle, rc)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: ends the handle exactly once.
    unsafe { (lib.end)(handle, rc) };
    match rc {
        PAM_SUCCESS => Ok(true),
        PAM_AUTH_ERR
        | PAM_USER_UNKNOWN
        | PAM_PERM_DENIED
        | PAM_MAXTRIES
        | PAM_ACCT_EXPIRED
        | PAM_CRED_INSUFFICIENT
        | PAM_NEW_AUTHTOK_REQD => {
            crate::verbose!("pam: {user}: {reason}");
            Ok(false)
        }
        _ => Err(PamError::Service {
            service: service.to_string(),
            reason,
        }),
    }
}

/// Answers PAM's prompts: the name for an echoed prompt, the password for
/// a hidden one; informational messages get empty answers.
extern "C" fn converse(
    count: c_int,
    messages: *mut *const Message,
    responses: *mut *mut Response,
    data: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(count) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || messages.is_null() || responses.is_null() || data.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: PAM passes `count` message pointers (the Linux-PAM layout)
    // and our own `data`; the responses array is allocated with calloc
    // because PAM frees it, and each answer with strdup for the same reason.
    unsafe {
        let (user, password) = &*data.cast::<(CString, CString)>();
        let array = libc::calloc(n, std::mem::size_of::<Response>()).cast::<Response>();
        if array.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..n {
            let message = *messages.add(i);
            let answer = match (*message).style {
                PAM_PROMPT_ECHO_OFF => password.as_ptr(),
                PAM_PROMPT_ECHO_ON => user.as_ptr(),
                _ => c"".as_ptr(),
            };
            (*array.add(i)).text = libc::strdup(answer);
        }
        *responses = array;
    }
    PAM_SUCCESS
}

fn library() -> Result<&'static Library, PamError> {
    static LIBRARY: OnceLock<Result<Library, PamError>> = OnceLock::new();
    LIBRARY.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Library, PamError> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast
    // to the signature Linux-PAM documents for it, and the library stays
    // loaded for the life of the process.
    unsafe {
        let handle = libc::dlopen(c"libpam.so.0".as_ptr(), libc::RTLD_NOW);
        if handle.is_null() {
            let why = "cannot load libpam.so.0: is PAM installed?";
            return Err(PamError::Library(why.into()));
        }
        let symbol = |name: &CStr| {
            let p = libc::dlsym(handle, name.as_ptr());
            if p.is_null() {
                Err(PamError::Library(format!(
                    "libpam has no {}",
                    name.to_string_lossy()
                )))
            } else {
                Ok(p)
            }
        };
        Ok(Library {
            start: std::mem::transmute::<*mut c_void, StartFn>(symbol(c"pam_start")?),
            authenticate: std::mem::transmute::<*mut c_void, HandleFn>(symbol(
                c"pam_authenticate",
            )?),
            acct_mgmt: std::mem::transmute::<*mut c_void, HandleFn>(symbol(c"pam_acct_mgmt")?),
            end: std::mem::transmute::<*mut c_void, HandleFn>(symbol(c"pam_end")?),
            strerror: std::mem::transmute::<*mut c_void, StrErrorFn>(symbol(c"pam_strerror")?),
        })
    }
}
