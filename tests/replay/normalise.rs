//! The normalisations of tests/golden/README.md, applied to what our
//! binaries say: the same rules, in the same order, as the recorder
//! (scripts/record-golden) applied to what 2.6.1 said.

use std::collections::BTreeMap;

pub struct Normaliser {
    /// The scenario directory, and its canonical form.
    pub dirs: Vec<String>,
    /// The canonical directory of the program.
    pub app_dir: String,
    /// Our version number (2.6.1's is replaced by the recorder).
    pub version: String,
    /// Run-time numbers (ports, pids) and their placeholders.
    pub numbers: BTreeMap<String, String>,
    /// The UTC date (`%d`) and hour (`%h`) when the scenario started.
    pub started: (String, String),
    pub hostname: String,
    /// A Windows scenario's names, replaced first.
    pub windows: Option<WindowsNames>,
}

/// What a Windows scenario's output names (README.md, Windows scenarios).
pub struct WindowsNames {
    /// The scenario directory's Linux paths (it and its canonical form).
    pub dirs: Vec<String>,
    /// The Wine prefix.
    pub prefix: String,
}

impl Normaliser {
    pub fn normalise(&self, data: &[u8]) -> Vec<u8> {
        let mut data = data.to_vec();
        if let Some(names) = &self.windows {
            data = names.normalise(&data);
        }
        for dir in &self.dirs {
            data = replace(&data, dir.as_bytes(), b"{DIR}");
        }
        data = replace(&data, self.app_dir.as_bytes(), b"{APPDIR}");
        data = replace_version_strings(&data);
        data = replace_openssl_versions(&data);
        data = replace_version(&data, self.version.as_bytes());
        data = replace_spool_ids(&data);
        data = replace_angle_ids(&data);
        data = replace_log_times(&data);
        data = replace_dates(&data);
        data = replace_challenges(&data);
        data = replace_pop_challenges(&data);
        data = replace_apop_digests(&data);
        data = replace_retry_delays(&data);
        self.replace_numbers(&data)
    }

    /// A file's path: as `normalise`; a maildir file name's time and
    /// hostname; and in a component starting with "log" (a --log-file
    /// name), the `%d` date and `%h` hour (UTC, as the programs run with
    /// TZ=UTC) at the start or end of the scenario.
    pub fn normalise_path(&self, rel: &str) -> String {
        let text = String::from_utf8_lossy(&self.normalise(rel.as_bytes())).into_owned();
        let now = date_and_hour();
        let dates = [&self.started.0, &now.0];
        let hours = [&self.started.1, &now.1];
        let component = |c: &str| -> String {
            if let Some(name) = maildir_name(c, &self.hostname) {
                return name;
            }
            if let Some(name) = maildir_convention_name(c) {
                return name;
            }
            if !c.starts_with("log") {
                return c.to_string();
            }
            let (mut out, mut run) = (String::new(), String::new());
            for ch in c.chars().chain(std::iter::once('/')) {
                if ch.is_ascii_digit() {
                    run.push(ch);
                    continue;
                }
                if dates.contains(&&run) {
                    out.push_str("{YYYYMMDD}");
                } else if hours.contains(&&run) {
                    out.push_str("{HH}");
                } else {
                    out.push_str(&run);
                }
                run.clear();
                if ch != '/' {
                    out.push(ch);
                }
            }
            out
        };
        text.split('/').map(component).collect::<Vec<_>>().join("/")
    }

    fn replace_numbers(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            if !data[i].is_ascii_digit() {
                out.push(data[i]);
                i += 1;
                continue;
            }
            let end = i + data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let run = std::str::from_utf8(&data[i..end]).unwrap();
            match self.numbers.get(run) {
                Some(name) if !is_pid(name) || pid_context(data, i, end) => {
                    out.extend(name.as_bytes())
                }
                _ => out.extend(run.as_bytes()),
            }
            i = end;
        }
        out
    }
}

/// A process id's placeholder: replaced only where a pid stands (see
/// [`pid_context`]), since a small pid can equal a reply code or a count.
fn is_pid(name: &str) -> bool {
    matches!(name, "{PID}" | "{DAEMONPID}")
}

/// Where a pid stands: a line of its own (the admin `pid` reply, a pid
/// file), a part of a file name between dots (a maildir name) or between
/// `P` and `Q` (the maildir convention's). Not `500 command unrecognized`
/// when the pid is 500.
fn pid_context(data: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| data[i]);
    let after = data.get(end).copied();
    let alone = matches!(before, None | Some(b'\n' | b'.'))
        && matches!(after, None | Some(b'\r' | b'\n' | b'.'));
    alone || (before, after) == (Some(b'P'), Some(b'Q'))
}

impl WindowsNames {
    /// The scenario directory as Windows sees it (`Z:\tmp\golden-...`,
    /// either case of the drive letter) -> `{WDIR}`, with forward slashes
    /// -> `{WDIRF}`; the prefix -> `{PREFIX}`; in Wine's debug lines, the
    /// thread id -> `{TID}` and 16-digit hex values -> `{PTR}`. (2.6.1's
    /// console program's name -> `{PROGRAM}` is not done here: the replay
    /// puts the name of the program it runs in the fixture instead.)
    fn normalise(&self, data: &[u8]) -> Vec<u8> {
        let mut data = data.to_vec();
        for dir in &self.dirs {
            let back = dir.replace('/', "\\");
            data = replace_drive_path(&data, back.as_bytes(), b"{WDIR}");
            data = replace_drive_path(&data, dir.as_bytes(), b"{WDIRF}");
        }
        data = replace(&data, self.prefix.as_bytes(), b"{PREFIX}");
        replace_debug_lines(&data)
    }
}

/// `Z:` or `z:` followed by `path`, not followed by a letter, digit, `_`
/// or `-` -> `to`.
fn replace_drive_path(data: &[u8], path: &[u8], to: &[u8]) -> Vec<u8> {
    let name_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let rest = &data[i..];
        let end = 2 + path.len();
        if rest.len() >= end
            && (rest[0] == b'Z' || rest[0] == b'z')
            && rest[1] == b':'
            && rest[2..].starts_with(path)
            && !rest.get(end).is_some_and(name_char)
        {
            out.extend(to);
            i += end;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Wine's debug lines (`0123:fixme:channel:...`): the thread id ->
/// `{TID}:`, and 16-digit hex values (pointers) -> `{PTR}`.
fn replace_debug_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        if !is_debug_line(line) {
            out.extend(line);
            continue;
        }
        out.extend(b"{TID}:");
        let rest = &line[5..];
        let hex = |b: &u8| b.is_ascii_hexdigit();
        let mut i = 0;
        while i < rest.len() {
            let run = rest[i..].iter().take_while(|b| hex(b)).count();
            let fresh = i == 0 || !hex(&rest[i - 1]);
            if fresh && run == 16 {
                out.extend(b"{PTR}");
                i += 16;
            } else if run > 0 {
                out.extend(&rest[i..i + run]);
                i += run;
            } else {
                out.push(rest[i]);
                i += 1;
            }
        }
    }
    out
}

/// A line of Wine's debug output: four lower-case hex digits, `:`, a
/// class (`fixme`, `err`, `warn`, `trace`) and `:`.
pub fn is_debug_line(line: &[u8]) -> bool {
    line.len() > 5
        && line[..4]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && line[4] == b':'
        && [&b"fixme:"[..], b"err:", b"warn:", b"trace:"]
            .iter()
            .any(|class| line[5..].starts_with(class))
}

pub fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// `E-MailRelay V2.6.1` or `E-MailRelay-rs V0.1.0` -> `{VERSION-STRING}`.
fn replace_version_strings(data: &[u8]) -> Vec<u8> {
    let shape = |d: &[u8]| -> Option<usize> {
        let mut j = b"E-MailRelay".len();
        if !d.starts_with(b"E-MailRelay") {
            return None;
        }
        if d[j..].starts_with(b"-rs") {
            j += 3;
        }
        if !d[j..].starts_with(b" V") {
            return None;
        }
        j += 2;
        let first = digits(&d[j..]);
        if first == 0 {
            return None;
        }
        j += first;
        let mut parts = 0;
        while d.get(j) == Some(&b'.') && digits(&d[j + 1..]) > 0 {
            j += 1 + digits(&d[j + 1..]);
            parts += 1;
        }
        (parts > 0).then_some(j)
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if let Some(len) = shape(&data[i..]) {
            out.extend(b"{VERSION-STRING}");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// The version number as a token: not inside a longer dotted number.
fn replace_version(data: &[u8], version: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let before_ok = i == 0 || !(data[i - 1].is_ascii_digit() || data[i - 1] == b'.');
        let end = i + version.len();
        let after_ok = end >= data.len()
            || !(data[end].is_ascii_digit()
                || (data[end] == b'.' && data.get(end + 1).is_some_and(u8::is_ascii_digit)));
        if before_ok && data[i..].starts_with(version) && after_ok {
            out.extend(b"{VERSION}");
            i = end;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Length of the run of ASCII digits at the start of `data`.
fn digits(data: &[u8]) -> usize {
    data.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `emailrelay.<pid>.<seconds>.<n>` -> `emailrelay.{PID}.{SECS}.<n>`.
fn replace_spool_ids(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"emailrelay.") {
            let mut j = i + 11;
            let a = digits(&data[j..]);
            if a > 0 && data.get(j + a) == Some(&b'.') {
                j += a + 1;
                let b = digits(&data[j..]);
                if b > 0 && data.get(j + b) == Some(&b'.') && digits(&data[j + b + 1..]) > 0 {
                    out.extend(b"emailrelay.{PID}.{SECS}.");
                    i = j + b + 1;
                    continue;
                }
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// Message-IDs and APOP challenges `<digits.digits[.digits]@` -> `<{ID}@`.
fn replace_angle_ids(data: &[u8]) -> Vec<u8> {
    let shape = |d: &[u8]| -> Option<usize> {
        if d.first() != Some(&b'<') {
            return None;
        }
        let mut j = 1;
        let mut groups = 0;
        loop {
            let n = digits(&d[j..]);
            if n == 0 {
                return None;
            }
            j += n;
            groups += 1;
            match d.get(j) {
                Some(b'.') => j += 1,
                Some(b'@') if groups >= 2 => return Some(j + 1),
                _ => return None,
            }
        }
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if let Some(len) = shape(&data[i..]) {
            out.extend(b"<{ID}@");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Log timestamps `YYYYMMDD.HHMMSS.mmm` -> `{LOGTIME}`.
fn replace_log_times(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let fresh = i == 0 || !data[i - 1].is_ascii_digit();
        let shape = |d: &[u8]| {
            d.len() >= 19
                && digits(d) == 8
                && d[8] == b'.'
                && digits(&d[9..]) == 6
                && d[15] == b'.'
                && digits(&d[16..]) == 3
        };
        if fresh && shape(&data[i..]) {
            out.extend(b"{LOGTIME}");
            i += 19;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// RFC 5322 dates `Tue, 24 Nov 2026 14:31:28 +0000` (the weekday
/// optional) -> `{DATE}`.
fn replace_dates(data: &[u8]) -> Vec<u8> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Length of `D Mon YYYY HH:MM:SS +ZZZZ` at the start of d.
    let date_len = |d: &[u8]| -> Option<usize> {
        let mut j = 0;
        let day = digits(d);
        if !(1..=2).contains(&day) || d.get(j + day) != Some(&b' ') {
            return None;
        }
        j += day + 1;
        if d.len() < j + 4 || !MONTHS.iter().any(|m| d[j..].starts_with(m)) || d[j + 3] != b' ' {
            return None;
        }
        j += 4;
        if digits(&d[j..]) != 4 || d.get(j + 4) != Some(&b' ') {
            return None;
        }
        j += 5;
        let time = d.get(j..j + 8)?;
        let time_ok = time.iter().enumerate().all(|(k, c)| {
            if k == 2 || k == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        });
        if !time_ok || d.get(j + 8) != Some(&b' ') {
            return None;
        }
        j += 9;
        let zone = d.get(j..j + 5)?;
        if !(zone[0] == b'+' || zone[0] == b'-') || digits(&zone[1..]) != 4 {
            return None;
        }
        Some(j + 5)
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let rest = &data[i..];
        let weekday =
            rest.len() > 5 && DAYS.iter().any(|w| rest.starts_with(w)) && &rest[3..5] == b", ";
        let found = if weekday {
            date_len(&rest[5..]).map(|n| n + 5)
        } else if i == 0 || !data[i - 1].is_ascii_digit() {
            date_len(rest)
        } else {
            None
        };
        if let Some(len) = found {
            out.extend(b"{DATE}");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// `334 ` and a base64 run of 20 or more characters (a CRAM-MD5
/// challenge; LOGIN's prompts are shorter) -> `334 {CHALLENGE}`.
fn replace_challenges(data: &[u8]) -> Vec<u8> {
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"334 ") {
            let run = data[i + 4..].iter().take_while(|&&b| b64(b)).count();
            let pad = data[i + 4 + run..]
                .iter()
                .take_while(|&&b| b == b'=')
                .count();
            let next = data.get(i + 4 + run + pad).copied();
            if run >= 20 && !next.is_some_and(|b| b64(b) || b == b'=') {
                out.extend(b"334 {CHALLENGE}");
                i += 4 + run + pad;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// At the start of a line or after `"` (a log line's trace), `+ ` and a
/// base64 run of 20 or more characters (a POP CRAM-MD5 challenge; LOGIN's
/// prompts are shorter) -> `+ {CHALLENGE}`.
fn replace_pop_challenges(data: &[u8]) -> Vec<u8> {
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let line_start = i == 0 || data[i - 1] == b'\n' || data[i - 1] == b'"';
        if line_start && data[i..].starts_with(b"+ ") {
            let run = data[i + 2..].iter().take_while(|&&b| b64(b)).count();
            let pad = data[i + 2 + run..]
                .iter()
                .take_while(|&&b| b == b'=')
                .count();
            let next = data.get(i + 2 + run + pad).copied();
            if run >= 20 && !next.is_some_and(|b| b64(b) || b == b'=') {
                out.extend(b"+ {CHALLENGE}");
                i += 2 + run + pad;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// `APOP <name> ` and 32 lower-case hex digits (the digest of a random
/// timestamp) -> `APOP <name> {DIGEST}`.
fn replace_apop_digests(data: &[u8]) -> Vec<u8> {
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"APOP ") {
            let name = data[i + 5..]
                .iter()
                .take_while(|&&b| b != b' ' && b != b'\r' && b != b'\n')
                .count();
            let at = i + 5 + name + 1;
            let digest = data
                .get(at..)
                .map_or(0, |d| d.iter().take_while(|b| hex(b)).count());
            if name > 0 && data.get(at - 1) == Some(&b' ') && digest == 32 {
                out.extend(&data[i..at]);
                out.extend(b"{DIGEST}");
                i = at + 32;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// `next attempt in <n>s` (a retry delay, with random jitter) ->
/// `next attempt in {N}s`.
fn replace_retry_delays(data: &[u8]) -> Vec<u8> {
    const HEAD: &[u8] = b"next attempt in ";
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(HEAD) {
            let n = digits(&data[i + HEAD.len()..]);
            if n > 0 && data.get(i + HEAD.len() + n) == Some(&b's') {
                out.extend(HEAD);
                out.extend(b"{N}s");
                i += HEAD.len() + n + 1;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// A maildir file name `<secs>.<usecs>.<pid>.<hostname>.<n>` ->
/// `{SECS}.{USECS}.<pid>.{HOSTNAME}.<n>`.
fn maildir_name(c: &str, hostname: &str) -> Option<String> {
    let is_num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (secs, rest) = c.split_once('.')?;
    let (usecs, rest) = rest.split_once('.')?;
    let (middle, n) = rest.rsplit_once('.')?;
    let pid = middle.strip_suffix(hostname)?.strip_suffix('.')?;
    let ok = is_num(secs) && is_num(usecs) && is_num(n) && !pid.is_empty() && !pid.contains('.');
    ok.then(|| format!("{{SECS}}.{{USECS}}.{pid}.{{HOSTNAME}}.{n}"))
}

/// A maildir file name by the maildir convention,
/// `<secs>.M<usecs>P<pid>Q<n>.<rest>` -> `{SECS}.M{USECS}P<pid>Q<n>.<rest>`.
fn maildir_convention_name(c: &str) -> Option<String> {
    let is_num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (secs, rest) = c.split_once(".M")?;
    let (usecs, rest) = rest.split_once('P')?;
    let (pid, rest) = rest.split_once('Q')?;
    let (n, rest) = rest.split_once('.')?;
    let ok = is_num(secs) && is_num(usecs) && (is_num(pid) || pid == "{PID}") && is_num(n);
    ok.then(|| format!("{{SECS}}.M{{USECS}}P{pid}Q{n}.{rest}"))
}

/// `OpenSSL <x.y.z>[letters][ <d Mon yyyy>]` (the library on this
/// machine) -> `OpenSSL {OPENSSL-VERSION}`.
fn replace_openssl_versions(data: &[u8]) -> Vec<u8> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let shape = |d: &[u8]| -> Option<usize> {
        let mut j = b"OpenSSL ".len();
        if !d.starts_with(b"OpenSSL ") {
            return None;
        }
        for k in 0..3 {
            let n = digits(&d[j..]);
            if n == 0 {
                return None;
            }
            j += n;
            if k < 2 {
                if d.get(j) != Some(&b'.') {
                    return None;
                }
                j += 1;
            }
        }
        j += d[j..].iter().take_while(|b| b.is_ascii_lowercase()).count();
        // An optional release date: ` 25 Aug 2026`.
        let rest = &d[j..];
        let day = rest
            .first()
            .filter(|&&b| b == b' ')
            .map(|_| digits(&rest[1..]));
        if let Some(day @ 1..=2) = day {
            let m = 1 + day + 1;
            let month_ok = rest.get(1 + day) == Some(&b' ')
                && rest
                    .get(m..)
                    .is_some_and(|r| MONTHS.iter().any(|mo| r.starts_with(mo)));
            if month_ok && rest.get(m + 3) == Some(&b' ') && digits(&rest[m + 4..]) == 4 {
                j += m + 4 + 4;
            }
        }
        Some(j)
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if let Some(len) = shape(&data[i..]) {
            out.extend(b"OpenSSL {OPENSSL-VERSION}");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// The UTC date as `YYYYMMDD` and hour as `HH`.
pub fn date_and_hour() -> (String, String) {
    let now = chrono::Utc::now();
    (
        now.format("%Y%m%d").to_string(),
        now.format("%H").to_string(),
    )
}
