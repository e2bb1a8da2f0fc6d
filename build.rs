//! Two things the compiler cannot do alone:
//! - on Windows, builds the Event Log message table
//!   (packaging/windows/messages.mc) into the programs with MinGW's windmc
//!   and windres (`WINDMC` and `WINDRES` name other tools);
//! - on Linux, in release builds, has the linker lay out the relay's code
//!   in link/emailrelay.order (scripts/text-order says why and writes it),
//!   where the linker takes that file (lld does; GNU ld does not).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=EMAILRELAY_BUILD_RUSTC={}", rustc_commit());
    match std::env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("windows") => message_table(),
        Ok("linux") => text_order(),
        _ => {}
    }
}

/// The relay's functions that run while it idles, together at the start
/// of its code, so that the few pages it runs are the few it maps.
fn text_order() {
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("link/emailrelay.order");
    println!("cargo:rerun-if-changed={}", order.display());
    if env("PROFILE") != "release" || !order.exists() {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        // Names the build has not got (the other feature set's, say).
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    if links_with(&args) {
        for arg in &args {
            println!("cargo:rustc-link-arg-bin=emailrelay={arg}");
        }
    } else {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (lld does): \
             the relay's code is laid out in the compiler's order, and maps more memory"
        );
    }
}

/// Whether a program links with `args` given to the linker, with the
/// build's own compiler, target and flags (a probe, as autocfg does).
fn links_with(args: &[String]) -> bool {
    let out = Path::new(&env("OUT_DIR")).join("text-order-probe");
    let _ = std::fs::create_dir_all(&out);
    let source = out.join("probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut command = Command::new(env("RUSTC"));
    command
        .args(["--target", &env("TARGET"), "--crate-type", "bin", "-o"])
        .arg(out.join("probe"))
        .arg(&source);
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    command.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    for arg in args {
        command.arg("-C").arg(format!("link-arg={arg}"));
    }
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The compiler's commit (`rustc -vV`), which the order's names follow.
fn rustc_commit() -> String {
    Command::new(env("RUSTC"))
        .arg("-vV")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("commit-hash: "))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// The Event Log's message table, compiled and linked into the programs.
fn message_table() {
    println!("cargo:rerun-if-changed=packaging/windows/messages.mc");
    println!("cargo:rerun-if-env-changed=WINDMC");
    println!("cargo:rerun-if-env-changed=WINDRES");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    let source = Path::new("packaging/windows/messages.mc")
        .canonicalize()
        .expect("packaging/windows/messages.mc");
    let windmc = std::env::var("WINDMC").unwrap_or_else(|_| "x86_64-w64-mingw32-windmc".into());
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| "x86_64-w64-mingw32-windres".into());
    run(Command::new(&windmc)
        .arg("-h")
        .arg(out)
        .arg("-r")
        .arg(out)
        .arg(&source));
    let object = out.join("messages.o");
    run(Command::new(&windres)
        .arg("-I")
        .arg(out)
        .arg(out.join("messages.rc"))
        .arg("-O")
        .arg("coff")
        .arg("-o")
        .arg(&object));
    println!("cargo:rustc-link-arg-bins={}", object.display());
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}): install Debian's binutils-mingw-w64-x86-64",
            command.get_program()
        )
    });
    assert!(status.success(), "{command:?} failed: {status}");
}
