//! Builds the Event Log message table (packaging/windows/messages.mc) into
//! the Windows programs with MinGW's windmc and windres; nothing to do for
//! other targets. `WINDMC` and `WINDRES` name other tools.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/windows/messages.mc");
    println!("cargo:rerun-if-env-changed=WINDMC");
    println!("cargo:rerun-if-env-changed=WINDRES");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
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
