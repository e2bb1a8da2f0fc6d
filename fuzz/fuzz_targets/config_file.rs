//! Arbitrary config files, given as the relay's only argument, through
//! `Args::parse` (lines -> options -> instances) and then `Config::build`
//! (values -> settings). Neither may panic; what parses must name the
//! file, have at least one instance and hold only known options.
//!
//! Must not let the input reach the rest of the file system: `build`
//! reads the files options name (secrets, certificates), so it runs only
//! on input without a `/`, which leaves relative names in the fuzzer's
//! directory and `@app` in a private one.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use emailrelay::config::{find_long, Args, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (dir, file) = scratch();
    std::fs::write(file, data).expect("scratch file writable");
    let argv = [file.to_string_lossy().into_owned()];
    let Ok(args) = Args::parse(&argv, dir) else {
        return;
    };
    assert_eq!(args.config_file.as_deref(), Some(file.as_path()));
    assert!(!args.instances.is_empty());
    for instance in &args.instances {
        for name in instance.names() {
            assert!(find_long(name).is_some(), "unknown option {name} accepted");
        }
    }
    if !data.contains(&b'/') {
        let _ = Config::build(&args, || "fuzz.example".to_string());
    }
});

/// A private directory (the `@app` directory) and the config file in it.
fn scratch() -> &'static (PathBuf, PathBuf) {
    static SCRATCH: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("emailrelay-fuzz-config.{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let file = dir.join("emailrelay.conf");
        (dir, file)
    })
}
