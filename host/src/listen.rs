//! Where the server listens: the sockets systemd hands over (socket
//! activation), or the ones bound here from `--addr` and `--admin-addr`.
//!
//! With a `.socket` unit, systemd owns the listening socket and passes it to
//! each process it starts (`$LISTEN_FDS`, `$LISTEN_PID`). Across a restart
//! the socket stays open in systemd, so connections that arrive while no
//! process runs wait in its backlog instead of being refused. The first
//! socket passed serves traffic; a second, if any, serves the admin
//! endpoints.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::net::{TcpListener, TcpSocket};

use crate::app::Listeners;

/// Connections the kernel may hold before they are accepted. std and tokio
/// ask for 128, which a burst of new connections overflows: the kernel
/// drops the client's SYN, and the client retries a second later. The
/// kernel caps this at `net.core.somaxconn` (4096 by default since Linux
/// 5.4), the same as `Backlog=` in `docs/wasi-serve.socket`.
pub const BACKLOG: u32 = 4096;

/// A listening socket on `addr` with a backlog of [`BACKLOG`], and
/// `SO_REUSEADDR` so a restart binds while old connections linger in
/// TIME_WAIT (as std and tokio do).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The sockets systemd passed to this process, in the order of the unit's
/// `ListenStream=` lines.
pub struct Inherited(Vec<std::net::TcpListener>);

impl Inherited {
    /// Takes the sockets passed for this process and clears the variables
    /// that name them. Call it before any other thread starts: it changes
    /// the environment.
    pub fn take() -> Result<Inherited> {
        if let Some(count) = std::env::var_os("LISTEN_FDS") {
            let Some(count) = count.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                bail!("socket activation: LISTEN_FDS={count:?} is not a number of sockets");
            };
            // Checked before `from_env`, which makes room for every one.
            if count > 2 && meant_for_us() {
                bail!(
                    "socket activation: {count} sockets passed (LISTEN_FDS); wasi-serve takes \
                     one for traffic and, optionally, a second for the admin endpoints"
                );
            }
        }
        // `from_env` ignores sockets meant for another process (`LISTEN_PID`).
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Vec::with_capacity(fds.len());
        for index in 0..fds.len() {
            let fd = 3 + index;
            let socket = fds
                .take_tcp_listener(index)
                .and_then(|socket| socket.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
                .with_context(|| format!("socket activation: fd {fd} is not a TCP socket"))?;
            if !is_listening(&socket) {
                bail!("socket activation: fd {fd} is a TCP socket that is not listening");
            }
            socket
                .set_nonblocking(true)
                .with_context(|| format!("socket activation: fd {fd}"))?;
            sockets.push(socket);
        }
        Ok(Inherited(sockets))
    }

    /// No sockets were passed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The listeners to serve on. Inherited sockets come first; what is not
    /// inherited is bound from `addr` and `admin_addr`. `addr_given` says
    /// whether `--addr` was set (not defaulted): setting it while systemd
    /// passes the socket is a mistake, reported rather than ignored.
    pub async fn into_listeners(
        self,
        addr: SocketAddr,
        addr_given: bool,
        admin_addr: Option<SocketAddr>,
    ) -> Result<Listeners> {
        let mut inherited = self.0.into_iter();
        let http = match inherited.next() {
            Some(socket) if addr_given => {
                bail!(
                    "`--addr {addr}` given, but systemd passed a listening socket ({}); \
                     drop one of them",
                    local_addr(&socket)
                )
            }
            Some(socket) => TcpListener::from_std(socket)?,
            None => bind(addr).with_context(|| format!("failed to listen on `{addr}`"))?,
        };
        let admin = match (inherited.next(), admin_addr) {
            (Some(socket), Some(addr)) => bail!(
                "`--admin-addr {addr}` given, but systemd passed a second socket ({}) for it; \
                 drop one of them",
                local_addr(&socket)
            ),
            (Some(socket), None) => Some(TcpListener::from_std(socket)?),
            (None, Some(admin)) if admin.port() != 0 && http.local_addr().ok() == Some(admin) => {
                bail!(
                    "`--admin-addr {admin}` is the address requests are served on; give it another port"
                )
            }
            (None, Some(addr)) => Some(
                bind(addr)
                    .with_context(|| format!("failed to listen on `{addr}` (--admin-addr)"))?,
            ),
            (None, None) => None,
        };
        Ok(Listeners { http, admin })
    }
}

/// Whether `LISTEN_FDS` names sockets for this process: `LISTEN_PID` is
/// this process, or (as `listenfd` also accepts) unset or empty.
fn meant_for_us() -> bool {
    std::env::var_os("LISTEN_PID").is_none_or(|pid| {
        pid.is_empty() || pid.to_str().and_then(|pid| pid.parse().ok()) == Some(std::process::id())
    })
}

fn local_addr(socket: &std::net::TcpListener) -> String {
    socket
        .local_addr()
        .map_or_else(|_| "unknown address".into(), |addr| addr.to_string())
}

/// Whether `listen(2)` was called on the socket (`SO_ACCEPTCONN`).
fn is_listening(socket: &std::net::TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is open (owned by `socket`), and `value` and
    // `len` are valid for the size passed.
    let status = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    status == 0 && value != 0
}
