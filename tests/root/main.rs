//! Tests that need root, run by a runner of their own so that where they
//! cannot run (not root) each is reported ignored, with the reason,
//! rather than passing without having checked anything. CI runs as root,
//! so they run there.

#[cfg(unix)]
mod container;
#[cfg(unix)]
mod submit;

use libtest_mimic::{Arguments, Completion, Trial};

/// (name, why it needs root, the test).
type RootTest = (&'static str, &'static str, fn());

#[cfg(unix)]
const TESTS: &[RootTest] = &[
    (
        "submit::set_group_id_installs_write_files_the_relay_can_read",
        "needs root to make a set-group-id copy and run it as nobody",
        submit::set_group_id_installs_write_files_the_relay_can_read,
    ),
    (
        "container::the_image_builds_and_runs_under_podman",
        "needs root for rootful podman (and a cgroup mount in some sandboxes)",
        container::the_image_builds_and_runs_under_podman,
    ),
];

#[cfg(not(unix))]
const TESTS: &[RootTest] = &[];

fn main() {
    let args = Arguments::from_args();
    #[cfg(unix)]
    let root = nix::unistd::Uid::effective().is_root();
    #[cfg(not(unix))]
    let root = false;
    let trials = TESTS
        .iter()
        .map(|&(name, why, test)| {
            Trial::ignorable_test(name, move || {
                if !root {
                    return Ok(Completion::ignored_with(why));
                }
                test();
                Ok(Completion::Completed)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
