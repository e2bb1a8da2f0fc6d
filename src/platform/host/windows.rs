//! Windows: the DNS name of the computer, the adapters' DNS servers,
//! `%ProgramData%`, the console.

use std::io::{self, BufRead};
use std::net::IpAddr;
use std::path::PathBuf;

use windows_sys::Win32::System::Console::{
    GetConsoleMode, GetConsoleScreenBufferInfo, GetStdHandle, SetConsoleMode,
    CONSOLE_SCREEN_BUFFER_INFO, ENABLE_ECHO_INPUT, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::SystemInformation::{
    ComputerNameDnsFullyQualified, ComputerNameDnsHostname, GetComputerNameExW,
    COMPUTER_NAME_FORMAT,
};

/// Where the spool is when `--spool-dir` is not given, as 2.6.1 has it:
/// `%ProgramData%\E-MailRelay\spool`.
pub fn default_spool_dir() -> PathBuf {
    let data = std::env::var_os("ProgramData")
        .map_or_else(|| PathBuf::from("C:\\ProgramData"), PathBuf::from);
    data.join("E-MailRelay").join("spool")
}

/// The certificates of the system's trusted root store (`ROOT`), as DER:
/// OpenSSL does not read the Windows certificate store by itself.
pub fn system_roots() -> Option<Vec<Vec<u8>>> {
    use windows_sys::Win32::Security::Cryptography::{
        CertCloseStore, CertEnumCertificatesInStore, CertOpenSystemStoreW,
    };
    let name = crate::platform::files::wide("ROOT");
    // SAFETY: no crypto provider (0) and a NUL-terminated store name.
    let store = unsafe { CertOpenSystemStoreW(0, name.as_ptr()) };
    if store.is_null() {
        return Some(Vec::new());
    }
    let mut roots = Vec::new();
    let mut context = std::ptr::null();
    loop {
        // SAFETY: an open store and the previous context (null first),
        // which the call frees; the one returned is valid until the next.
        context = unsafe { CertEnumCertificatesInStore(store, context) };
        // SAFETY: null or a valid context from the call above.
        let Some(cert) = (unsafe { context.as_ref() }) else {
            break;
        };
        // SAFETY: the context's encoded certificate, of the length it gives.
        let der =
            unsafe { std::slice::from_raw_parts(cert.pbCertEncoded, cert.cbCertEncoded as usize) };
        roots.push(der.to_vec());
    }
    // SAFETY: the store opened above, closed once (the last context is null).
    unsafe { CertCloseStore(store, 0) };
    Some(roots)
}

/// The first DNS server of the first adapter that has one.
pub fn nameserver() -> Option<IpAddr> {
    crate::platform::listen::dns_servers()
        .ok()?
        .into_iter()
        .next()
}

/// The width of the console window on standard output, if it is one.
pub(super) fn terminal_columns() -> Option<usize> {
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut info: CONSOLE_SCREEN_BUFFER_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: the standard output handle and a struct to fill.
    let ok = unsafe { GetConsoleScreenBufferInfo(GetStdHandle(STD_OUTPUT_HANDLE), &mut info) } != 0;
    let width = i32::from(info.srWindow.Right) - i32::from(info.srWindow.Left) + 1;
    (ok && width > 0).then_some(width as usize)
}

/// Reads one line from standard input; when it is a console, with a
/// prompt on standard error and without echoing what is typed.
pub fn read_secret_line(prompt: &str) -> Vec<u8> {
    use std::io::Write;
    // SAFETY: the standard input handle; its mode is read into `saved`.
    let handle = unsafe { GetStdHandle(STD_INPUT_HANDLE) };
    let mut saved = 0u32;
    // SAFETY: the same handle and an out-parameter for its mode.
    let console = unsafe { GetConsoleMode(handle, &mut saved) } != 0;
    if console {
        // SAFETY: the same handle, the mode less echo.
        unsafe { SetConsoleMode(handle, saved & !ENABLE_ECHO_INPUT) };
        crate::stderr!("{prompt}");
        let _ = io::stderr().flush();
    }
    let mut line = Vec::new();
    let _ = io::stdin().lock().read_until(b'\n', &mut line);
    if console {
        // SAFETY: the mode read above, put back.
        unsafe { SetConsoleMode(handle, saved) };
        crate::stderrln!();
    }
    line
}

fn computer_name(format: COMPUTER_NAME_FORMAT) -> Option<String> {
    let mut size = 0u32;
    // SAFETY: asks for the size first (null buffer), then fills one of it.
    unsafe { GetComputerNameExW(format, std::ptr::null_mut(), &mut size) };
    if size == 0 {
        return None;
    }
    let mut buffer = vec![0u16; size as usize];
    // SAFETY: a buffer of the `size` characters the first call asked for.
    let ok = unsafe { GetComputerNameExW(format, buffer.as_mut_ptr(), &mut size) } != 0;
    let name = String::from_utf16_lossy(&buffer[..size as usize]);
    (ok && !name.is_empty()).then_some(name)
}

/// The computer's fully qualified DNS name (the `--domain` default),
/// falling back to its host name, then `localhost`.
pub fn canonical_hostname() -> String {
    computer_name(ComputerNameDnsFullyQualified)
        .or_else(|| computer_name(ComputerNameDnsHostname))
        .unwrap_or_else(|| "localhost".into())
}
