//! The running service: start the relay, watch it, and on a stop or
//! shutdown control let it drain before it ends.
//!
//! ```text
//!  StartPending --spawn--> Running --relay exits--> Stopped(Specific(code, 0 -> 3))
//!                             |
//!                           Stop / Shutdown
//!                             v
//!                        StopPending: set the relay's stop event (retried
//!                        for ASK_LIMIT while the relay may still be creating
//!                        it); checkpoint +1 a second
//!                             |-- relay exits ------------------> Stopped(Ok, or its code)
//!                             |-- no stop event after ASK_LIMIT --\
//!                             |-- still running at DRAIN_LIMIT ---+-> TerminateProcess,
//!                                                                     logged -> Stopped(Ok)
//! ```
//!
//! E-MailRelay 2.6.1 terminates its relay outright on stop, which cuts a
//! message in DATA short and leaves `.busy` files for the next start to
//! recover. Here the relay drains as on SIGTERM (idle sessions get 421,
//! a session in DATA finishes and gets its reply), and is only
//! terminated when it has not finished within [`DRAIN_LIMIT`] (the
//! relay's own drain takes at most 17 s per instance, see `run`).
//!
//! Everything the loop does to the world goes through [`Host`], so that
//! its timing is tested with a made-up clock.

use std::io;
use std::time::Duration;

use super::locate::Launch;
use crate::platform::service::{Control, Exit, Status};

/// How often the loop looks at the relay and the controls.
pub const TICK: Duration = Duration::from_millis(100);

/// How long a stop keeps trying to set the relay's stop event (which the
/// relay creates early in its start-up) before it terminates the relay:
/// a relay without one (2.6.1's `emailrelay.exe` named in a batch file)
/// can only be terminated.
pub const ASK_LIMIT: Duration = Duration::from_secs(2);

/// How long the relay may take to drain after a stop before it is
/// terminated.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// How long to wait for a terminated relay to be gone.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// How serious a line of the service's own log is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// What the service loop does to the world.
pub trait Host {
    /// Reports to the service manager.
    fn set_status(&mut self, status: Status);
    /// The next control, waiting at most `wait`.
    fn next_control(&mut self, wait: Duration) -> Option<Control>;
    /// Time since the service started.
    fn elapsed(&self) -> Duration;
    /// Starts the relay; its process id.
    fn spawn(&mut self, launch: &Launch) -> io::Result<u32>;
    /// The relay's exit code once it has ended.
    fn child_exit(&mut self) -> Option<u32>;
    /// Sets the relay's stop event; false if it has none.
    fn request_stop(&mut self) -> bool;
    /// Ends the relay at once.
    fn terminate(&mut self);
    /// A line for the service's own log.
    fn log(&mut self, level: Level, text: &str);
}

/// Runs the service until it has stopped: starts `launch`, watches it,
/// drains it on a stop; the last status reported is `Stopped`.
pub fn run(host: &mut impl Host, launch: &Launch) {
    host.log(Level::Info, &format!("starting [{}]", launch.command_line));
    let pid = match host.spawn(launch) {
        Ok(pid) => pid,
        Err(e) => {
            host.log(
                Level::Error,
                &format!("cannot start [{}]: {e}", launch.command_line),
            );
            let code = e.raw_os_error().map_or(1, |c| c as u32);
            host.set_status(Status::Stopped(Exit::Win32(code)));
            return;
        }
    };
    let exit = supervise(host, pid);
    host.set_status(Status::Stopped(exit));
}

/// Watches the running relay until it exits or a stop arrives.
fn supervise(host: &mut impl Host, pid: u32) -> Exit {
    host.set_status(Status::Running);
    loop {
        if let Some(code) = host.child_exit() {
            host.log(
                Level::Error,
                &format!("the relay (pid {pid}) has ended with exit code {code}"),
            );
            // E-MailRelay compatibility: the relay's exit code is the
            // service-specific error, and an exit code of 0 (the relay
            // should not end by itself) becomes 3.
            return Exit::Specific(if code == 0 { 3 } else { code });
        }
        if host.next_control(TICK).is_some() {
            return drain(host, pid);
        }
    }
}

/// Asks the relay to stop and waits a bounded time for it to finish.
fn drain(host: &mut impl Host, pid: u32) -> Exit {
    let start = host.elapsed();
    let mut asked = false;
    let mut checkpoint = 0;
    loop {
        let waited = host.elapsed().saturating_sub(start);
        if let Some(code) = host.child_exit() {
            host.log(
                Level::Info,
                &format!(
                    "the relay (pid {pid}) has stopped with exit code {code} after {} ms",
                    waited.as_millis()
                ),
            );
            return if code == 0 {
                Exit::Ok
            } else {
                Exit::Specific(code)
            };
        }
        if !asked {
            asked = host.request_stop();
            if asked {
                host.log(
                    Level::Info,
                    &format!("asked the relay (pid {pid}) to stop: it finishes its sessions first"),
                );
            } else if waited >= ASK_LIMIT {
                host.log(
                    Level::Warning,
                    &format!("the relay (pid {pid}) has no stop event: terminating it"),
                );
                return terminate(host, pid);
            }
        }
        if waited >= DRAIN_LIMIT {
            host.log(
                Level::Warning,
                &format!(
                    "the relay (pid {pid}) has not stopped within {} s of the stop request: terminating it",
                    DRAIN_LIMIT.as_secs()
                ),
            );
            return terminate(host, pid);
        }
        let next = 1 + waited.as_secs() as u32;
        if next != checkpoint {
            checkpoint = next;
            host.set_status(Status::StopPending {
                checkpoint,
                wait_hint: DRAIN_LIMIT.saturating_sub(waited) + KILL_WAIT,
            });
        }
        // Further stops and shutdowns change nothing.
        let _ = host.next_control(TICK);
    }
}

fn terminate(host: &mut impl Host, pid: u32) -> Exit {
    host.terminate();
    let start = host.elapsed();
    while host.elapsed().saturating_sub(start) < KILL_WAIT {
        if host.child_exit().is_some() {
            return Exit::Ok;
        }
        let _ = host.next_control(TICK);
    }
    host.log(
        Level::Error,
        &format!("the relay (pid {pid}) is still there after being terminated"),
    );
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay and a service manager in memory, on a made-up clock that
    /// moves only while the loop waits.
    #[derive(Default)]
    struct Fake {
        now: Duration,
        statuses: Vec<(Duration, Status)>,
        /// Controls, each due at a time.
        controls: Vec<(Duration, Control)>,
        /// The relay exits with this code at this time...
        exits_at: Option<(Duration, u32)>,
        /// ...or this long after its stop event is set.
        drains_in: Option<Duration>,
        /// The stop event exists from this time on (never if `None`).
        event_from: Option<Duration>,
        asked_at: Option<Duration>,
        terminated_at: Option<Duration>,
        spawn_error: Option<i32>,
        logs: Vec<(Level, String)>,
    }

    impl Fake {
        fn exited(&self) -> Option<u32> {
            if let Some(t) = self.terminated_at {
                if self.now >= t {
                    return Some(1);
                }
            }
            if let (Some(asked), Some(drain)) = (self.asked_at, self.drains_in) {
                if self.now >= asked + drain {
                    return Some(0);
                }
            }
            self.exits_at
                .filter(|(t, _)| self.now >= *t)
                .map(|(_, code)| code)
        }

        fn last_status(&self) -> Status {
            self.statuses.last().unwrap().1
        }

        fn warnings(&self) -> Vec<&str> {
            self.logs
                .iter()
                .filter(|(l, _)| *l == Level::Warning)
                .map(|(_, t)| t.as_str())
                .collect()
        }
    }

    impl Host for Fake {
        fn set_status(&mut self, status: Status) {
            self.statuses.push((self.now, status));
        }
        fn next_control(&mut self, wait: Duration) -> Option<Control> {
            let due = self.now + wait;
            if let Some(i) = self.controls.iter().position(|(t, _)| *t <= due) {
                let (t, control) = self.controls.remove(i);
                self.now = self.now.max(t);
                return Some(control);
            }
            self.now = due;
            None
        }
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn spawn(&mut self, _launch: &Launch) -> io::Result<u32> {
            match self.spawn_error {
                Some(code) => Err(io::Error::from_raw_os_error(code)),
                None => Ok(42),
            }
        }
        fn child_exit(&mut self) -> Option<u32> {
            self.exited()
        }
        fn request_stop(&mut self) -> bool {
            let exists = self.event_from.is_some_and(|t| self.now >= t) && self.exited().is_none();
            if exists && self.asked_at.is_none() {
                self.asked_at = Some(self.now);
            }
            exists
        }
        fn terminate(&mut self) {
            self.terminated_at.get_or_insert(self.now);
        }
        fn log(&mut self, level: Level, text: &str) {
            self.logs.push((level, text.to_string()));
        }
    }

    fn launch() -> Launch {
        Launch {
            program: "C:\\r\\emailrelay.exe".into(),
            args: "--hidden C:\\r\\emailrelay.cfg".into(),
            command_line: "C:\\r\\emailrelay.exe --hidden C:\\r\\emailrelay.cfg".into(),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_stop_sets_the_event_and_waits_for_the_drained_relay() {
        let mut host = Fake {
            controls: vec![(secs(5.0), Control::Stop)],
            event_from: Some(secs(0.2)),
            drains_in: Some(secs(3.5)),
            ..Fake::default()
        };
        run(&mut host, &launch());
        assert_eq!(host.asked_at, Some(secs(5.0)));
        assert_eq!(host.terminated_at, None);
        assert_eq!(host.last_status(), Status::Stopped(Exit::Ok));
        let (at, _) = host.statuses.last().unwrap();
        assert!(*at >= secs(8.5) && *at < secs(8.5) + TICK * 2, "{at:?}");
        // Running, then StopPending with a checkpoint each second.
        let states: Vec<Status> = host.statuses.iter().map(|(_, s)| *s).collect();
        assert_eq!(states[0], Status::Running);
        let checkpoints: Vec<u32> = states
            .iter()
            .filter_map(|s| match s {
                Status::StopPending { checkpoint, .. } => Some(*checkpoint),
                _ => None,
            })
            .collect();
        assert_eq!(checkpoints, vec![1, 2, 3, 4]);
        assert_eq!(
            states[1],
            Status::StopPending {
                checkpoint: 1,
                wait_hint: DRAIN_LIMIT + KILL_WAIT
            }
        );
        assert!(host.warnings().is_empty(), "{:?}", host.logs);
    }

    #[test]
    fn a_shutdown_drains_as_a_stop_does() {
        let mut host = Fake {
            controls: vec![(secs(1.0), Control::Shutdown)],
            event_from: Some(secs(0.1)),
            drains_in: Some(secs(0.5)),
            ..Fake::default()
        };
        run(&mut host, &launch());
        assert_eq!(host.asked_at, Some(secs(1.0)));
        assert_eq!(host.terminated_at, None);
        assert_eq!(host.last_status(), Status::Stopped(Exit::Ok));
    }

    #[test]
    fn a_relay_that_does_not_drain_is_terminated_at_the_limit_and_logged() {
        let mut host = Fake {
            controls: vec![(secs(1.0), Control::Stop), (secs(3.0), Control::Stop)],
            event_from: Some(secs(0.1)),
            ..Fake::default()
        };
        run(&mut host, &launch());
        let terminated = host.terminated_at.unwrap();
        assert!(
            terminated >= secs(1.0) + DRAIN_LIMIT
                && terminated < secs(1.0) + DRAIN_LIMIT + TICK * 2,
            "{terminated:?}"
        );
        assert_eq!(host.last_status(), Status::Stopped(Exit::Ok));
        assert_eq!(
            host.warnings(),
            vec!["the relay (pid 42) has not stopped within 20 s of the stop request: terminating it"]
        );
    }

    #[test]
    fn a_relay_without_a_stop_event_is_terminated_after_the_ask_limit() {
        let mut host = Fake {
            controls: vec![(secs(1.0), Control::Stop)],
            event_from: None,
            ..Fake::default()
        };
        run(&mut host, &launch());
        let terminated = host.terminated_at.unwrap();
        assert!(
            terminated >= secs(1.0) + ASK_LIMIT && terminated < secs(1.0) + ASK_LIMIT + TICK * 2,
            "{terminated:?}"
        );
        assert_eq!(
            host.warnings(),
            vec!["the relay (pid 42) has no stop event: terminating it"]
        );
        assert_eq!(host.last_status(), Status::Stopped(Exit::Ok));
    }

    #[test]
    fn a_stop_early_in_the_relay_start_waits_for_its_event() {
        let mut host = Fake {
            controls: vec![(secs(0.0), Control::Stop)],
            event_from: Some(secs(1.5)),
            drains_in: Some(secs(0.2)),
            ..Fake::default()
        };
        run(&mut host, &launch());
        assert_eq!(host.terminated_at, None);
        assert!(host.asked_at.unwrap() >= secs(1.5));
        assert_eq!(host.last_status(), Status::Stopped(Exit::Ok));
    }

    #[test]
    fn the_relay_exit_code_is_the_service_specific_error() {
        for (code, specific) in [(2, 2), (1, 1), (0, 3)] {
            let mut host = Fake {
                exits_at: Some((secs(4.0), code)),
                ..Fake::default()
            };
            run(&mut host, &launch());
            assert_eq!(
                host.last_status(),
                Status::Stopped(Exit::Specific(specific)),
                "{code}"
            );
            assert_eq!(host.terminated_at, None);
            assert_eq!(host.logs.last().unwrap().0, Level::Error);
        }
    }

    #[test]
    fn a_nonzero_exit_while_draining_is_reported() {
        let mut host = Fake {
            controls: vec![(secs(1.0), Control::Stop)],
            event_from: Some(secs(0.0)),
            exits_at: Some((secs(1.5), 1)),
            ..Fake::default()
        };
        run(&mut host, &launch());
        assert_eq!(host.last_status(), Status::Stopped(Exit::Specific(1)));
    }

    #[test]
    fn a_relay_that_cannot_start_stops_the_service_with_the_system_error() {
        let mut host = Fake {
            spawn_error: Some(2),
            ..Fake::default()
        };
        run(&mut host, &launch());
        assert_eq!(host.statuses.len(), 1);
        assert_eq!(host.last_status(), Status::Stopped(Exit::Win32(2)));
        assert!(host.logs[1]
            .1
            .starts_with("cannot start [C:\\r\\emailrelay.exe"));
    }
}
