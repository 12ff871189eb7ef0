//! `--dir HOST[::GUEST][:ro|:rw]`: a host directory the guest may open,
//! read-only unless `:rw` says otherwise; seen at GUEST, by default the
//! same path as on the host (as with `wasmtime serve --dir`). The guest gets
//! a capability for that directory alone: `..` and symlinks leading out of
//! it are refused by wasmtime-wasi (cap-std), not by us.

use std::path::PathBuf;

use anyhow::{Result, bail};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// One `--dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may create, write and delete in it.
    pub writable: bool,
}

/// Parses `HOST[::GUEST][:ro|:rw]`.
pub fn parse_dir(text: &str) -> Result<Preopen, String> {
    let (rest, writable) = match text.rsplit_once(':') {
        Some((rest, "rw")) => (rest, true),
        Some((rest, "ro")) => (rest, false),
        _ => (text, false),
    };
    let (host, guest, named) = match rest.split_once("::") {
        Some((host, guest)) => (host, guest, true),
        None => (rest, rest, false),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("`{text}` is not HOST[::GUEST][:ro|:rw]"));
    }
    // A mistyped mode would otherwise end up in the guest's path.
    if let Some((_, mode)) = guest.rsplit_once(':').filter(|_| named) {
        return Err(format!(
            "`{text}`: `{mode}` is not a mode (`ro` or `rw`), and a guest path cannot hold `:`"
        ));
    }
    Ok(Preopen {
        host: host.into(),
        guest: guest.into(),
        writable,
    })
}

impl Preopen {
    /// Fails unless the host directory exists and is a directory.
    pub fn check(&self) -> Result<()> {
        match std::fs::metadata(&self.host) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => bail!("--dir {}: not a directory", self.host.display()),
            // `public:xx` is a host path, unless `xx` was meant as a mode.
            Err(err) if self.host.to_string_lossy().contains(':') => bail!(
                "--dir {}: {err} (a mode is `:ro` or `:rw`)",
                self.host.display()
            ),
            Err(err) => bail!("--dir {}: {err}", self.host.display()),
        }
    }

    /// Grants the directory in `builder`. A directory that disappeared since
    /// start is logged and left out: the guest sees it missing.
    pub fn grant(&self, builder: &mut WasiCtxBuilder) {
        let perms = if self.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        if let Err(err) = builder.preopened_dir(&self.host, &self.guest, perms) {
            tracing::warn!(dir = %self.host.display(), "--dir not granted: {err:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let dir = |host: &str, guest: &str, writable| Preopen {
            host: host.into(),
            guest: guest.into(),
            writable,
        };
        assert_eq!(parse_dir("public"), Ok(dir("public", "public", false)));
        assert_eq!(
            parse_dir("public::/static"),
            Ok(dir("public", "/static", false))
        );
        assert_eq!(
            parse_dir("public::/static:rw"),
            Ok(dir("public", "/static", true))
        );
        assert_eq!(
            parse_dir("public::/static:ro"),
            Ok(dir("public", "/static", false))
        );
        assert_eq!(
            parse_dir("/srv/data:rw"),
            Ok(dir("/srv/data", "/srv/data", true))
        );
        assert!(parse_dir("::/static").is_err());
        assert!(parse_dir("public::").is_err());
        // A mistyped mode is named, not made part of the guest's path.
        let error = parse_dir("public::/static:wr").unwrap_err();
        assert!(error.contains("`wr` is not a mode"), "{error}");
        // On a host path alone it may be part of the name, so only a
        // directory that is not there is refused, with the modes named.
        let typo = parse_dir("public:wr").unwrap();
        assert_eq!(typo, dir("public:wr", "public:wr", false));
        let error = typo.check().unwrap_err().to_string();
        assert!(error.contains("a mode is `:ro` or `:rw`"), "{error}");
    }
}
