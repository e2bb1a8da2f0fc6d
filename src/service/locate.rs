//! Which files the service reads and which command it runs, as
//! E-MailRelay 2.6.1's wrapper decides:
//!
//! 1. `<wrapper dir>\<wrapper stem>.cfg` (`emailrelay-service.cfg`), if
//!    present, is a map file: `key value` or `key=value` lines, `#`
//!    comments, one pair of double quotes taken off a value, a repeated
//!    key's values joined with commas. `dir-config` and `dir-install` name
//!    directories; `@app` in them is the wrapper's directory, and a
//!    relative one is taken from the wrapper's directory. Both default to
//!    the wrapper's directory.
//! 2. `<dir-config>\<name>-start.bat`, if present, wins: its command
//!    (see [`super::batch`]) with ` --hidden` after the program.
//! 3. Otherwise `<dir-config>\<name>.cfg`: the relay is
//!    `<dir-install>\<name>.exe`, run as `<exe> --hidden <cfg>` (each
//!    quoted if it holds a space).
//! 4. Neither: an error naming both.
//!
//! Paths here are Windows paths held as text, whatever system runs the
//! code, so that the rules are tested anywhere; file access goes through
//! [`Files`].

use super::batch::{BatchCommand, BatchProblem};
use super::ServiceError;

/// What the service needs from the file system.
pub trait Files {
    /// True if something exists at `path`.
    fn exists(&self, path: &str) -> bool;
    /// A map file's text (UTF-8).
    fn read_config(&self, path: &str) -> Option<String>;
    /// A batch file's text (OEM code page, decoded).
    fn read_batch(&self, path: &str) -> Option<String>;
}

/// How the service starts its relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program (no quotes).
    pub program: String,
    /// The rest of the command line, passed as it is.
    pub args: String,
    /// The whole command line, for the log.
    pub command_line: String,
}

/// What the service reads and runs, and how it describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub launch: Launch,
    /// `<display> service (reads <file> at service start time)`.
    pub description: String,
}

/// Finds the service's files for service `name` of the wrapper at
/// `wrapper_exe`, and the command they give. `display_name` goes into
/// the description (the name when empty).
pub fn service_info(
    name: &str,
    display_name: &str,
    wrapper_exe: &str,
    files: &impl Files,
) -> Result<ServiceInfo, ServiceError> {
    let display_name = if display_name.is_empty() {
        name
    } else {
        display_name
    };
    let config = wrapper_config(wrapper_exe, files);
    let place = |key: &str, file: String| config_path(wrapper_exe, &config, key, &file);
    let batch_file = place("dir-config", format!("{name}-start.bat"));
    let config_file = place("dir-config", format!("{name}.cfg"));
    let (launch, reads) = if files.exists(&batch_file) {
        (from_batch(&batch_file, files)?, batch_file)
    } else if files.exists(&config_file) {
        let exe = place("dir-install", format!("{name}.exe"));
        (from_config(&exe, &config_file), config_file)
    } else {
        return Err(ServiceError::Missing {
            batch_file,
            config_file,
        });
    };
    Ok(ServiceInfo {
        launch,
        description: description(&format!(
            "{display_name} service (reads {reads} at service start time)"
        )),
    })
}

/// A path quoted if it holds a space (as 2.6.1 quotes program paths).
pub fn quoted(path: &str) -> String {
    if path.contains(' ') {
        format!("\"{path}\"")
    } else {
        path.to_string()
    }
}

/// The file name of `path` without its extension.
pub fn stem(path: &str) -> &str {
    let base = path.rsplit(['\\', '/']).next().unwrap_or(path);
    match base.rfind('.') {
        Some(dot) if dot > 0 => &base[..dot],
        _ => base,
    }
}

fn from_batch(path: &str, files: &impl Files) -> Result<Launch, ServiceError> {
    let problem = |problem| ServiceError::Batch {
        path: path.to_string(),
        problem,
    };
    let text = files
        .read_batch(path)
        .ok_or_else(|| problem(BatchProblem::CannotOpen))?;
    let command = BatchCommand::parse(&text).map_err(problem)?;
    let command_line = command.hidden();
    Ok(Launch {
        program: command.program(),
        args: command_line[command.args_at..].trim_start().to_string(),
        command_line,
    })
}

fn from_config(exe: &str, config_file: &str) -> Launch {
    let args = format!("--hidden {}", quoted(config_file));
    Launch {
        program: exe.to_string(),
        command_line: format!("{} {args}", quoted(exe)),
        args,
    }
}

/// E-MailRelay compatibility: the Services console shows at most 2048
/// characters of a description; a longer one is cut with `...`.
fn description(text: &str) -> String {
    const LIMIT: usize = 2048;
    if text.chars().count() + 5 <= LIMIT {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(LIMIT - 5).collect();
    cut.push_str("...");
    cut
}

/// The wrapper's own map file, read if it exists (an unreadable one
/// counts as empty).
fn wrapper_config(wrapper_exe: &str, files: &impl Files) -> MapFile {
    let path = join(&dirname(wrapper_exe), &format!("{}.cfg", stem(wrapper_exe)));
    if !files.exists(&path) {
        return MapFile::default();
    }
    MapFile::parse(&files.read_config(&path).unwrap_or_default())
}

/// `file` in the directory the map file's `key` names.
fn config_path(wrapper_exe: &str, config: &MapFile, key: &str, file: &str) -> String {
    let app = dirname(wrapper_exe);
    let dir = normalise(config.value(key)).replacen("@app", &app, 1);
    let dir = if dir.is_empty() {
        app
    } else if root_len(&dir) == 0 {
        join(&app, &dir)
    } else {
        dir
    };
    join(&dir, file)
}

/// A map file: ordered keys with their values.
#[derive(Debug, Default)]
struct MapFile {
    entries: Vec<(String, String)>,
}

impl MapFile {
    fn parse(text: &str) -> MapFile {
        let mut map = MapFile::default();
        for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
            if let Some((key, value)) = map_line(line) {
                map.add(key, value);
            }
        }
        map
    }

    fn add(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => {
                old.push(',');
                old.push_str(value);
            }
            None => self.entries.push((key.to_string(), value.to_string())),
        }
    }

    /// The value of `key`; empty when absent.
    fn value(&self, key: &str) -> &str {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One map-file line as key and value; `None` for blank lines and for
/// comments (a `#` before the first other character).
fn map_line(line: &str) -> Option<(&str, &str)> {
    const SEP: &[char] = &[' ', '=', '\t'];
    let first = line.find(|c: char| !matches!(c, ' ' | '\t' | '\r' | '#'))?;
    if line.find('#').is_some_and(|hash| hash < first) {
        return None;
    }
    let start = line.find(|c: char| !SEP.contains(&c))?;
    let rest = &line[start..];
    let end = rest.find(SEP).unwrap_or(rest.len());
    let value = rest[end..]
        .trim_start_matches(SEP)
        .trim_end_matches([' ', '\t', '\r', '\n']);
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => value,
    };
    Some((&rest[..end], value))
}

/// Forward slashes to backslashes, doubled backslashes to one (but a
/// leading `\\` of a UNC path), no trailing backslash beyond the root.
fn normalise(path: &str) -> String {
    let path = path.replace('/', "\\");
    let unc = path.starts_with("\\\\");
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '\\' && out.ends_with('\\')) {
            out.push(c);
        }
    }
    if unc {
        out.insert(0, '\\');
    }
    while out.len() > 1 && out.ends_with('\\') && out.len() > root_len(&out) {
        out.pop();
    }
    out
}

/// The length of a path's root: `C:\` 3, `C:` 2, `\\server\share\` up
/// to the share, `\` 1, and 0 for a relative path.
fn root_len(path: &str) -> usize {
    let b = path.as_bytes();
    if let Some(unc) = path.strip_prefix("\\\\") {
        let mut parts = unc.splitn(3, '\\');
        let server = parts.next().unwrap_or("").len();
        let share = parts.next().map_or(0, |s| s.len() + 1);
        return (2 + server + share).min(path.len());
    }
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return if b.get(2) == Some(&b'\\') { 3 } else { 2 };
    }
    usize::from(b.first() == Some(&b'\\'))
}

/// The directory part of a path (its root if that is all).
fn dirname(path: &str) -> String {
    let path = normalise(path);
    match path.rfind('\\') {
        Some(i) if i < root_len(&path) => path[..root_len(&path)].to_string(),
        Some(i) => path[..i].to_string(),
        None => String::new(),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        return normalise(name);
    }
    normalise(&format!("{dir}\\{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Files in memory, by Windows path.
    #[derive(Default)]
    struct Fake(HashMap<String, String>);

    impl Fake {
        fn with(mut self, path: &str, text: &str) -> Fake {
            self.0.insert(path.to_string(), text.to_string());
            self
        }
    }

    impl Files for Fake {
        fn exists(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn read_config(&self, path: &str) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn read_batch(&self, path: &str) -> Option<String> {
            self.0.get(path).cloned()
        }
    }

    const WRAPPER: &str = "Z:\\tmp\\ws\\emailrelay-service.exe";

    fn info(name: &str, display: &str, files: &Fake) -> Result<ServiceInfo, ServiceError> {
        service_info(name, display, WRAPPER, files)
    }

    #[test]
    fn the_batch_file_wins_over_the_config_file() {
        let files = Fake::default()
            .with(
                "Z:\\tmp\\ws\\emailrelay-start.bat",
                "start \"emailrelay\" \"Z:\\tmp\\ws\\emailrelay.exe\" \"Z:\\tmp\\ws\\emailrelay.cfg\"\r\n",
            )
            .with("Z:\\tmp\\ws\\emailrelay.cfg", "port 25\n");
        let i = info("emailrelay", "E-MailRelay", &files).unwrap();
        assert_eq!(
            i.launch.command_line,
            "\"Z:\\tmp\\ws\\emailrelay.exe\" --hidden \"Z:\\tmp\\ws\\emailrelay.cfg\""
        );
        assert_eq!(i.launch.program, "Z:\\tmp\\ws\\emailrelay.exe");
        assert_eq!(i.launch.args, "--hidden \"Z:\\tmp\\ws\\emailrelay.cfg\"");
        assert_eq!(
            i.description,
            "E-MailRelay service (reads Z:\\tmp\\ws\\emailrelay-start.bat at service start time)"
        );
    }

    #[test]
    fn the_config_file_runs_name_exe_beside_the_wrapper() {
        let files = Fake::default().with("Z:\\tmp\\ws\\emailrelay.cfg", "port 25\n");
        let i = info("emailrelay", "E-MailRelay", &files).unwrap();
        assert_eq!(
            i.launch.command_line,
            "Z:\\tmp\\ws\\emailrelay.exe --hidden Z:\\tmp\\ws\\emailrelay.cfg"
        );
        assert_eq!(i.launch.program, "Z:\\tmp\\ws\\emailrelay.exe");
        assert_eq!(i.launch.args, "--hidden Z:\\tmp\\ws\\emailrelay.cfg");
        assert_eq!(
            i.description,
            "E-MailRelay service (reads Z:\\tmp\\ws\\emailrelay.cfg at service start time)"
        );
    }

    #[test]
    fn a_named_service_reads_its_own_files_and_its_display_name_describes_it() {
        let files = Fake::default().with("Z:\\tmp\\ws\\relay2.cfg", "");
        let i = info("relay2", "Relay Two", &files).unwrap();
        assert_eq!(i.launch.program, "Z:\\tmp\\ws\\relay2.exe");
        assert_eq!(
            i.description,
            "Relay Two service (reads Z:\\tmp\\ws\\relay2.cfg at service start time)"
        );
        // At service start the display name is not known: the name serves.
        let i = info("relay2", "", &files).unwrap();
        assert!(i.description.starts_with("relay2 service (reads "));
    }

    #[test]
    fn paths_with_spaces_are_quoted() {
        let wrapper = "C:\\Program Files\\E-MailRelay\\emailrelay-service.exe";
        let files = Fake::default()
            .with("C:\\ProgramData\\E-MailRelay\\emailrelay.cfg", "")
            .with(
                "C:\\Program Files\\E-MailRelay\\emailrelay-service.cfg",
                "# where the files are\r\ndir-config=\"C:\\ProgramData\\E-MailRelay\"\r\n",
            );
        let i = service_info("emailrelay", "E-MailRelay", wrapper, &files).unwrap();
        assert_eq!(
            i.launch.command_line,
            "\"C:\\Program Files\\E-MailRelay\\emailrelay.exe\" --hidden C:\\ProgramData\\E-MailRelay\\emailrelay.cfg"
        );
        assert_eq!(
            i.launch.program,
            "C:\\Program Files\\E-MailRelay\\emailrelay.exe"
        );
        assert_eq!(quoted(wrapper), format!("\"{wrapper}\""));
    }

    #[test]
    fn dir_config_with_app_and_relative_dirs_and_dir_install() {
        for (cfg, dir) in [
            ("dir-config=@app\\config\r\n", "Z:\\tmp\\ws\\config"),
            ("dir-config @app/config/\n", "Z:\\tmp\\ws\\config"),
            ("dir-config config\n", "Z:\\tmp\\ws\\config"),
            ("  dir-config = \"D:\\relay data\"  \n", "D:\\relay data"),
            (
                "dir-config=\\\\server\\share\\relay\n",
                "\\\\server\\share\\relay",
            ),
            ("#dir-config=elsewhere\n", "Z:\\tmp\\ws"),
            ("dir-config=\n", "Z:\\tmp\\ws"),
        ] {
            let files = Fake::default()
                .with("Z:\\tmp\\ws\\emailrelay-service.cfg", cfg)
                .with(&format!("{dir}\\emailrelay.cfg"), "");
            let i = info("emailrelay", "E-MailRelay", &files)
                .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
            assert_eq!(
                i.description,
                format!("E-MailRelay service (reads {dir}\\emailrelay.cfg at service start time)"),
                "{cfg:?}"
            );
        }
        let files = Fake::default()
            .with(
                "Z:\\tmp\\ws\\emailrelay-service.cfg",
                "dir-install=C:\\bin\ndir-config=C:\\etc\n",
            )
            .with("C:\\etc\\emailrelay.cfg", "");
        let i = info("emailrelay", "E-MailRelay", &files).unwrap();
        assert_eq!(
            i.launch.command_line,
            "C:\\bin\\emailrelay.exe --hidden C:\\etc\\emailrelay.cfg"
        );
    }

    #[test]
    fn a_renamed_wrapper_reads_its_own_map_file() {
        let files = Fake::default()
            .with("Z:\\w\\svc.cfg", "dir-config=@app\\c\n")
            .with("Z:\\w\\c\\emailrelay.cfg", "");
        let i = service_info("emailrelay", "", "Z:\\w\\svc.exe", &files).unwrap();
        assert_eq!(i.launch.program, "Z:\\w\\emailrelay.exe");
    }

    #[test]
    fn neither_file_is_an_error_naming_both() {
        let e = info("emailrelay", "E-MailRelay", &Fake::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read \"Z:\\tmp\\ws\\emailrelay-start.bat\" or \"Z:\\tmp\\ws\\emailrelay.cfg\": 2"
        );
    }

    #[test]
    fn a_bad_batch_file_is_an_error_naming_it() {
        let files = Fake::default().with("Z:\\tmp\\ws\\emailrelay-start.bat", "a.exe\r\nb.exe\r\n");
        let e = info("emailrelay", "E-MailRelay", &files).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch file error: too many lines in batch file: Z:\\tmp\\ws\\emailrelay-start.bat"
        );
    }

    #[test]
    fn a_long_description_is_cut() {
        let long = "x".repeat(3000);
        let d = description(&long);
        assert_eq!(d.chars().count(), 2046);
        assert!(d.ends_with("x..."));
        assert_eq!(description("short"), "short");
    }

    #[test]
    fn map_file_lines() {
        let m = MapFile::parse(
            "# comment\n\nkey value\r\nk2=v2\n  k3 \t = \"quoted value\" \nk4\nkey again\n #x y\nk5 v # not a comment\n",
        );
        assert_eq!(m.value("key"), "value,again");
        assert_eq!(m.value("k2"), "v2");
        assert_eq!(m.value("k3"), "quoted value");
        assert_eq!(m.value("k4"), "");
        assert_eq!(m.value("#x"), "");
        assert_eq!(m.value("k5"), "v # not a comment");
        assert_eq!(m.value("missing"), "");
    }

    #[test]
    fn windows_paths() {
        assert_eq!(normalise("C:/a//b\\\\c\\"), "C:\\a\\b\\c");
        assert_eq!(normalise("C:\\"), "C:\\");
        assert_eq!(normalise("\\\\srv\\share\\x"), "\\\\srv\\share\\x");
        assert_eq!(dirname("C:\\x.exe"), "C:\\");
        assert_eq!(dirname("Z:\\tmp\\ws\\x.exe"), "Z:\\tmp\\ws");
        assert_eq!(join("C:\\", "a.cfg"), "C:\\a.cfg");
        assert_eq!(root_len("config"), 0);
        assert_eq!(root_len("D:x"), 2);
        assert_eq!(root_len("\\x"), 1);
        assert_eq!(
            stem("Z:\\tmp\\emailrelay-service.exe"),
            "emailrelay-service"
        );
        assert_eq!(stem("/opt/bin/emailrelay-service"), "emailrelay-service");
    }
}
