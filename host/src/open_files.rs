//! The open-files limit. Every connection is a file descriptor, and so is
//! every file a guest opens under `--dir` and every outgoing connection.
//! The soft limit a service starts with is often 1024 (systemd's default,
//! with a hard limit far above it), which runs out long before 1,000
//! instance slots do: past it, connections wait in the backlog while
//! `accept` fails. So at start the soft limit is raised to the hard one, as
//! Go's runtime does for every program, and a limit still too low for
//! `--max-concurrent-requests` is warned about.

use std::io;

/// The most a soft limit is raised to when the hard one is unlimited: the
/// kernel refuses more than `fs.nr_open`, which defaults to this.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Descriptors the host keeps for itself besides its connections: the
/// listeners, the log, the engine's, the cache's.
pub const RESERVED: u64 = 64;

/// The soft limit on open files, before and after [`raise`].
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

/// Raises this process's soft limit on open files to its hard limit (or to
/// the kernel's default ceiling, when the hard limit is unlimited).
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
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        NR_OPEN_DEFAULT.max(before)
    } else {
        limit.rlim_max
    };
    if before >= target {
        return Ok(OpenFiles {
            before,
            now: before,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `raised` is a valid `rlimit`; the call only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles {
        before,
        now: target,
    })
}
