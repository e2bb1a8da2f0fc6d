//! The relay's code layout (link/emailrelay.order, issue 27). The order
//! names the functions by their symbols, whose hashes follow the compiler
//! and Cargo.lock: once either changes, the linker finds none of them and
//! the relay maps nearly all of its code again (3 MB instead of 0.5). So
//! the order must have been written for this compiler and this lock file.

use std::path::Path;

#[test]
fn the_code_order_was_written_for_this_compiler_and_cargo_lock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order =
        std::fs::read_to_string(root.join("link/emailrelay.order")).expect("link/emailrelay.order");
    let header = |key: &str| {
        order
            .lines()
            .find_map(|line| line.strip_prefix("# ")?.strip_prefix(key))
            .map(str::to_string)
    };
    let lock = std::fs::read(root.join("Cargo.lock")).expect("Cargo.lock");
    let lock: String = ring::digest::digest(&ring::digest::SHA256, &lock)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let stale = "link/emailrelay.order is stale: run scripts/text-order and commit it";
    assert_eq!(
        header("rustc ").as_deref(),
        Some(env!("EMAILRELAY_BUILD_RUSTC")),
        "{stale}"
    );
    assert_eq!(header("Cargo.lock "), Some(lock), "{stale}");
    let names: Vec<&str> = order
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert!(names.len() >= 300, "{} names", names.len());
    assert!(
        names.iter().all(|name| !name.contains(char::is_whitespace)),
        "one symbol per line"
    );
}
