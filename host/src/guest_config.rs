//! `wasi:config/store` (the version wasmtime-wasi-config serves): values
//! from `--config KEY=VALUE` and `--config-file FILE`. A reload (SIGHUP,
//! `--watch`) reads the file again; a file that does not parse is rejected
//! with one line and the values in force stay. Each request sees one set of
//! values, whichever was in force at its first read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::units::parse_key_value;

/// The `--config` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// A configuration value guests read through `wasi:config/store`:
    /// KEY=VALUE. Repeatable (the environment variable form holds one);
    /// wins over the same key in `--config-file`.
    /// Keys not given read as absent.
    #[arg(long = "config", env = "WASI_SERVE_CONFIG", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub values: Vec<(String, String)>,

    /// Configuration values from a TOML file of flat `key = value` lines
    /// (strings, numbers, booleans), read again on every reload.
    #[arg(
        long = "config-file",
        env = "WASI_SERVE_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub file: Option<PathBuf>,
}

/// The values in force.
pub struct GuestConfig {
    args: ConfigArgs,
    values: ArcSwap<WasiConfigVariables>,
}

impl GuestConfig {
    /// Reads the flags and the file; an unreadable or malformed file is an
    /// error naming it and the line.
    pub fn load(args: &ConfigArgs) -> Result<GuestConfig> {
        let values = read(args)?;
        Ok(GuestConfig {
            args: args.clone(),
            values: ArcSwap::from_pointee(values),
        })
    }

    /// The values a request starting now sees.
    pub fn current(&self) -> Arc<WasiConfigVariables> {
        self.values.load_full()
    }

    /// The file reloads read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.args.file.as_deref()
    }

    /// Reads the file again and puts its values in force; on error the old
    /// ones stay.
    pub fn reload(&self) -> Result<()> {
        self.values.store(Arc::new(read(&self.args)?));
        Ok(())
    }
}

fn read(args: &ConfigArgs) -> Result<WasiConfigVariables> {
    let mut values = match &args.file {
        Some(path) => parse_file(path)?,
        None => BTreeMap::new(),
    };
    values.extend(args.values.iter().cloned());
    Ok(values.into_iter().collect())
}

/// The flat table in the TOML file at `path`.
fn parse_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config-file {}", path.display()))?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table: BTreeMap<String, toml::Spanned<toml::Value>> = match toml::from_str(&text) {
        Ok(table) => table,
        Err(err) => {
            let line = err.span().map_or(1, |span| line_of(span.start));
            bail!(
                "--config-file {}: line {line}: {}",
                path.display(),
                err.message().trim()
            );
        }
    };
    table
        .into_iter()
        .map(|(key, value)| {
            let line = line_of(value.span().start);
            let text = match value.into_inner() {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "--config-file {}: line {line}: `{key}` is a {}; values are strings, numbers or booleans",
                    path.display(),
                    other.type_str()
                ),
            };
            Ok((key, text))
        })
        .collect()
}
