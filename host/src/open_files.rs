//! The open-files limit. Every connection is a file descriptor, and so is
//! every file a guest opens under `--dir` and every outgoing connection.
//! The soft limit a service starts with is often 1024 (systemd's default,
//! with a hard limit far above it), which runs out long before 1,000
//! instance slots do: past it, connections wait in the backlog while
//! `accept` fails. So at start the soft limit is raised to the hard one, as
//! Go's runtime does for every program.

use std::io;

/// Descriptors the host keeps for itself besides its connections: the
/// listeners, the log, the engine's, the cache's.
pub const RESERVED: u64 = 64;

/// The soft limit on open files, before and after [`raise`].
#[derive(Debug)]
pub struct OpenFiles {
    /// The limit the process started with.
    pub before: u64,
    /// The limit now.
    pub now: u64,
    /// Why it could not be raised, if it could not.
    pub refused: Option<io::Error>,
}

/// Raises this process's soft limit on open files to its hard limit. The
/// kernel refuses a hard limit above `fs.nr_open` (lowered after the limit
/// was set, say), even one left unchanged; then both become `fs.nr_open`.
pub fn raise() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if before >= limit.rlim_max {
        return Ok(OpenFiles {
            before,
            now: before,
            refused: None,
        });
    }
    let mut refused = set(limit.rlim_max, limit.rlim_max).err();
    if refused.is_some()
        && let Some(ceiling) = nr_open().filter(|&ceiling| ceiling < limit.rlim_max)
        && ceiling > before
    {
        refused = set(ceiling, ceiling).err();
    }
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles {
        before,
        now: now.rlim_cur,
        refused,
    })
}

/// Sets the soft and hard limits on open files.
fn set(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid `rlimit`; the call only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's ceiling on any process's open files.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}
