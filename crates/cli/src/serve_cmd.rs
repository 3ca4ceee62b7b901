//! `switchyard serve`: configuration from file, environment and flags, then the server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use switchyard_server::config::{CliOverrides, LogFormat, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: SWITCHYARD_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Storage URL: sqlite://PATH or postgres://... [env: SWITCHYARD_DB] [default: sqlite://switchyard.db].
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Configuration file (TOML; see config.example.toml) [env: SWITCHYARD_CONFIG].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Import a flag file into the store at start (repeatable) [env: SWITCHYARD_IMPORT].
    #[arg(long, value_name = "FILE")]
    import: Vec<PathBuf>,
    /// Serve read-only from a flag file, reloading it when it changes (GitOps) [env: SWITCHYARD_FLAGS].
    #[arg(long, value_name = "FILE")]
    flags: Option<PathBuf>,
    /// Replace flags that differ from the --import files (audited), instead of reporting them
    /// as drift and leaving runtime changes alone [env: SWITCHYARD_IMPORT_OVERWRITE].
    #[arg(long)]
    import_overwrite: bool,
    /// Keep the last snapshot here and serve it when starting while the database is down
    /// [env: SWITCHYARD_SNAPSHOT_FILE].
    #[arg(long, value_name = "FILE")]
    snapshot_file: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let env = std::env::vars().collect();
    let cli = CliOverrides {
        config: args.config,
        listen: args.listen,
        db: args.db,
        import: args.import,
        flags: args.flags,
        import_overwrite: args.import_overwrite,
        snapshot_file: args.snapshot_file,
    };
    let settings = Settings::load(&cli, &env).context("invalid configuration")?;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("invalid log filter `{}`", settings.log_level))?;
    // Colours only for a person at a terminal, never into a log file or a collector.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(switchyard_server::run(settings))?;
    Ok(ExitCode::SUCCESS)
}

/// Every stream client holds a connection (a file descriptor): raise the soft limit to the
/// hard one, as servers expecting many connections do, so the common default of 1 024 does
/// not cap the clients a replica can serve.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 4096 => tracing::warn!(
            limit,
            "the open-file limit is low: each stream client takes one; raise it (ulimit -n, LimitNOFILE=)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(err) => tracing::debug!(error = %err, "cannot read or raise the open-file limit"),
    }
}
