//! The fixture format of tests/golden/README.md: parsing, and the escapes
//! that keep bytes on printable lines.

/// One scenario as recorded.
#[derive(Default)]
pub struct Fixture {
    pub name: String,
    pub program: String,
    /// The arguments as bytes (they need not be UTF-8).
    pub args: Vec<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<String>,
    pub mkdirs: Vec<String>,
    /// (path, mode, bytes).
    pub inputs: Vec<(String, u32, Vec<u8>)>,
    /// (path, target): symbolic links made before the start.
    pub symlinks: Vec<(String, String)>,
    /// Inputs the test holds an exclusive `flock` on from before the start
    /// to the end (as a running forwarder holds a `.busy` envelope).
    pub locks: Vec<String>,
    /// (name, port name, behaviour, reply for `lines`).
    pub sinks: Vec<(String, String, String, Vec<u8>)>,
    pub stdin: Option<Vec<u8>>,
    /// `Some(ports)`: a server to wait for; `None`: run to completion.
    pub start: Option<Vec<String>>,
    /// For `run`: seconds after which 2.6.1 counted as still running.
    pub run_limit: u64,
    pub steps: Vec<Step>,
}

pub enum Step {
    Exit(String),
    Connect {
        c: String,
        port: String,
        cport: String,
    },
    Send {
        c: String,
        data: Vec<u8>,
    },
    Expect {
        c: String,
        data: Vec<u8>,
    },
    Eof(String),
    Close(String),
    Settle,
    WaitLog(String),
    WaitGone(String),
    WaitExists(String),
    Sleep(u64),
    Signal(String),
    StopPidfile(String),
    Capture(Vec<Captured>),
}

pub enum Captured {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    File {
        path: String,
        meta: String,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        meta: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    Gone(String),
    Sink {
        name: String,
        index: usize,
        data: Vec<u8>,
    },
}

impl Fixture {
    pub fn parse(name: &str, text: &str) -> Result<Fixture, String> {
        let mut f = Fixture {
            name: name.to_string(),
            run_limit: 20,
            ..Fixture::default()
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        // The `| ` lines after a header, as bytes.
        let data = |i: &mut usize| -> Result<Vec<u8>, String> {
            let mut out = Vec::new();
            while *i < lines.len() && lines[*i].starts_with("| ") {
                out.extend(unescape(&lines[*i][2..])?);
                *i += 1;
            }
            Ok(out)
        };
        let mut capture: Option<Vec<Captured>> = None;
        while i < lines.len() {
            let line = lines[i];
            let at = i + 1;
            i += 1;
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("{name}.golden line {at}: {what}: {line}");
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let fields: Vec<&str> = rest.split(' ').collect();
            let field = |n: usize| -> Result<String, String> {
                fields
                    .get(n)
                    .filter(|f| !f.is_empty())
                    .map(|f| f.to_string())
                    .ok_or_else(|| bad("a field is missing"))
            };
            if let Some(items) = capture.as_mut() {
                let item = match word {
                    "stdout" => Some(Captured::Stdout(data(&mut i)?)),
                    "stderr" => Some(Captured::Stderr(data(&mut i)?)),
                    "file" => Some(Captured::File {
                        path: field(0)?,
                        meta: fields[1..].join(" "),
                        data: data(&mut i)?,
                    }),
                    "dir" => Some(Captured::Dir {
                        path: field(0)?,
                        meta: fields[1..].join(" "),
                    }),
                    "symlink" => Some(Captured::Symlink {
                        path: field(0)?,
                        target: field(1)?,
                    }),
                    "gone" => Some(Captured::Gone(rest.to_string())),
                    "sink-data" => Some(Captured::Sink {
                        name: field(0)?,
                        index: field(1)?.parse().map_err(|_| bad("not a number"))?,
                        data: data(&mut i)?,
                    }),
                    _ => None,
                };
                if let Some(item) = item {
                    items.push(item);
                    continue;
                }
                f.steps
                    .push(Step::Capture(capture.take().unwrap_or_default()));
            }
            match word {
                "scenario" | "note" => {}
                "program" => f.program = rest.to_string(),
                "arg" => f.args.push(unescape(rest)?),
                "env" => {
                    let (k, v) = rest.split_once('=').ok_or_else(|| bad("no ="))?;
                    f.env.push((k.to_string(), v.to_string()));
                }
                "port" => f.ports.push(rest.to_string()),
                "mkdir" => f.mkdirs.push(rest.to_string()),
                "input" => {
                    let mode = u32::from_str_radix(&field(1)?, 8).map_err(|_| bad("not a mode"))?;
                    let bytes = data(&mut i)?;
                    f.inputs.push((field(0)?, mode, bytes));
                }
                "symlink" => f.symlinks.push((field(0)?, field(1)?)),
                "lock" => f.locks.push(rest.to_string()),
                "sink" => f.sinks.push((
                    field(0)?,
                    field(1)?,
                    field(2)?,
                    match fields.get(3) {
                        Some(r) => unescape(r)?,
                        None => Vec::new(),
                    },
                )),
                "stdin" => f.stdin = Some(data(&mut i)?),
                "start" => f.start = Some(fields.iter().map(|s| s.to_string()).collect()),
                "run" => {
                    f.start = None;
                    f.run_limit = rest.parse().map_err(|_| bad("not a number"))?;
                }
                "exit" => f.steps.push(Step::Exit(rest.to_string())),
                "connect" => f.steps.push(Step::Connect {
                    c: field(0)?,
                    port: field(1)?,
                    cport: field(2)?,
                }),
                "C" => f.steps.push(Step::Send {
                    c: rest.to_string(),
                    data: data(&mut i)?,
                }),
                "S" => f.steps.push(Step::Expect {
                    c: rest.to_string(),
                    data: data(&mut i)?,
                }),
                "eof" => f.steps.push(Step::Eof(rest.to_string())),
                "close" => f.steps.push(Step::Close(rest.to_string())),
                "settle" => f.steps.push(Step::Settle),
                "wait-log" => f.steps.push(Step::WaitLog(
                    String::from_utf8_lossy(&unescape(rest)?).into_owned(),
                )),
                "wait-gone" => f.steps.push(Step::WaitGone(rest.to_string())),
                "wait-exists" => f.steps.push(Step::WaitExists(rest.to_string())),
                "sleep" => f
                    .steps
                    .push(Step::Sleep(rest.parse().map_err(|_| bad("not a number"))?)),
                "signal" => f.steps.push(Step::Signal(rest.to_string())),
                "stop-pidfile" => f.steps.push(Step::StopPidfile(rest.to_string())),
                "capture" => capture = Some(Vec::new()),
                _ => return Err(bad("unknown line")),
            }
        }
        if let Some(items) = capture {
            f.steps.push(Step::Capture(items));
        }
        if f.program.is_empty() {
            return Err(format!("{name}.golden: no program line"));
        }
        Ok(f)
    }
}

/// Undoes the fixture escapes: `\\`, `\r`, `\n`, `\t`, `\xHH`.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'x' => {
                let hex = text
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a bad \\x escape in: {text}"))?;
                out.push(hex);
                i += 2;
            }
            other => out.push(other),
        }
        i += 2;
    }
    Ok(out)
}

/// Bytes as one escaped line: the recorder's `escape` (a trailing space
/// is `\x20`, so that no line ends in white space).
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\x20");
    }
    out
}

/// The `| ` lines of a block: one per line of data, split after each LF.
pub fn data_lines(data: &[u8]) -> Vec<String> {
    data.split_inclusive(|&b| b == b'\n')
        .map(|piece| format!("| {}", escape(piece)))
        .collect()
}
