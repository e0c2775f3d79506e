//! The `sessiongate` command line. Everything else lives in the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates small, short-lived objects on several threads; glibc's
/// malloc showed up at ~7% of the profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sessiongate::config::{self, Config, ConfigErrors, LoadOptions, LogFormat};
use sessiongate::login::users::Users;
use sessiongate::preflight::{self, Checked};

#[derive(Parser)]
#[command(
    name = "sessiongate",
    version,
    about = "A TLS-terminating reverse proxy that owns the sessions of the apps behind it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (the default command).
    Run(RunArgs),
    /// Check a configuration: exit 0, or one line per problem naming its key.
    CheckConfig {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Check as `run --dev` would start (missing certificate, secrets, upstream allowed).
        #[arg(long)]
        dev: bool,
    },
    /// Read a password on standard input, print its argon2id PHC string for users.toml.
    HashPassword,
    /// Print a random secret (32 bytes, base64url) for keys.*_secret_env.
    GenSecret,
    /// Tell the running gateway to reload its configuration: SIGHUP to the pid in
    /// `server.pid_file`.
    Reload {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Write a self-signed localhost certificate for development.
    DevCert {
        #[arg(long, default_value = "certs/localhost.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "certs/localhost-key.pem")]
        key: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args, Default, Clone)]
struct RunArgs {
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    /// Laptop mode: create what is missing (certificate, secrets, demo user, whoami upstream).
    #[arg(long)]
    dev: bool,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Run(RunArgs {
        config: "gateway.toml".into(),
        dev: false,
    })) {
        Cmd::Run(args) => run(args),
        Cmd::CheckConfig { config, dev } => {
            let opts = LoadOptions { dev };
            match config::read(&config, opts)
                .and_then(|raw| preflight::validate_and_check(raw, opts, &config::System))
            {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(errs) => {
                    eprintln!("{errs}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::HashPassword => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("cannot read the password from standard input: {e}");
                return ExitCode::FAILURE;
            }
            let pw = input
                .strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&input);
            if pw.is_empty() {
                eprintln!("empty password on standard input");
                return ExitCode::FAILURE;
            }
            match sessiongate::login::users::hash_password(pw) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hashing failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Reload { config } => signal_reload(&config),
        Cmd::GenSecret => {
            println!("{}", sessiongate::util::random_token(32));
            ExitCode::SUCCESS
        }
        Cmd::DevCert { cert, key, force } => {
            if !force && (cert.exists() || key.exists()) {
                eprintln!(
                    "{} or {} exists; pass --force to overwrite",
                    cert.display(),
                    key.display()
                );
                return ExitCode::FAILURE;
            }
            match sessiongate::dev::write_dev_cert(&cert, &key) {
                Ok(()) => {
                    println!(
                        "wrote {} and {} (self-signed, for localhost only)",
                        cert.display(),
                        key.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

type LogFilter =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Logging to standard error at `level` (or `RUST_LOG`, which then wins over reloads too).
/// The handle changes the level on reload; `None` when `RUST_LOG` fixed it.
fn init_logging(level: &str, format: LogFormat) -> Option<LogFilter> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(level)));
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false);
    let layer = match format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Text => layer.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
    (!fixed).then_some(handle)
}

/// How `run` reads its configuration again on SIGHUP: as at start, keeping what `--dev` made
/// up for this process (random secrets, the demo user), so a reload logs nobody out.
struct FromFiles {
    args: RunArgs,
    log: Option<LogFilter>,
    /// `--dev`: the random secrets of this process, and the demo user.
    dev_secrets: (config::Secret, config::Secret),
    demo: Option<(String, String)>,
}

impl sessiongate::server::reload::Reload for FromFiles {
    fn load(&self) -> Result<(Config, Users), ConfigErrors> {
        let (mut cfg, mut users, notes) = prepare(&self.args)?;
        if self.args.dev {
            let random = |key: &str| {
                notes
                    .iter()
                    .any(|n| n.starts_with(key) && n.contains("random"))
            };
            if random("keys.access_secret_env") {
                cfg.keys.access_secret = self.dev_secrets.0.clone();
            }
            if random("keys.refresh_secret_env") {
                cfg.keys.refresh_secret = self.dev_secrets.1.clone();
            }
        }
        if let Some((user, password)) = &self.demo {
            users
                .add(user, password, vec!["demo".into()])
                .map_err(|e| ConfigErrors::one("login.users_file", e))?;
        }
        Ok((cfg, users))
    }

    fn applied(&self, cfg: &Config) {
        if let Some(handle) = &self.log {
            let level = tracing_subscriber::EnvFilter::new(&cfg.log_level);
            if let Err(e) = handle.reload(level) {
                tracing::warn!(error = %e, "log.level: cannot apply the new level");
            }
        }
    }
}

/// `sessiongate reload`: SIGHUP to the pid written in `server.pid_file`.
fn signal_reload(config_path: &std::path::Path) -> ExitCode {
    let cfg = match config::load(config_path, LoadOptions::default()) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid_file) = cfg.server.pid_file else {
        eprintln!("server.pid_file is not set: send SIGHUP to the gateway's process yourself");
        return ExitCode::FAILURE;
    };
    match sessiongate::server::pid_file::signal_reload(&pid_file) {
        Ok(pid) => {
            println!(
                "sent SIGHUP to {pid} (server.pid_file {})",
                pid_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server.pid_file {}: {e}", pid_file.display());
            ExitCode::FAILURE
        }
    }
}

/// `run`'s configuration: read; in `--dev`, create the development files it names that are
/// missing; validate; check the files. Also returns what `--dev` did on its own.
fn prepare(args: &RunArgs) -> Result<(Config, Users, Vec<String>), ConfigErrors> {
    let opts = LoadOptions { dev: args.dev };
    let raw = config::read(&args.config, opts)?;
    let created = if args.dev {
        sessiongate::dev::create_missing_files(
            &raw.tls.cert,
            &raw.tls.key,
            raw.keys.assertion_key_file.as_deref(),
        )?
    } else {
        Vec::new()
    };
    let (mut cfg, Checked { users, notes }) =
        preflight::validate_and_check(raw, opts, &config::System)?;
    let notes = [created, std::mem::take(&mut cfg.dev_notes), notes].concat();
    Ok((cfg, users, notes))
}

fn run(args: RunArgs) -> ExitCode {
    let (cfg, mut users, notes) = match prepare(&args) {
        Ok(prepared) => prepared,
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!(
                "sessiongate: not started ({} problem(s) in {})",
                errs.0.len(),
                args.config.display()
            );
            return ExitCode::from(2);
        }
    };
    let log = init_logging(&cfg.log_level, cfg.log_format);
    if args.dev {
        tracing::warn!("development mode (--dev): not for production");
        for note in &notes {
            tracing::warn!("{note}");
        }
    }
    let mut demo = None;
    if args.dev {
        let password = sessiongate::util::random_token(12);
        if let Err(e) = users.add("demo", &password, vec!["demo".into()]) {
            eprintln!("cannot create the demo user: {e}");
            return ExitCode::from(2);
        }
        println!("demo login: user=demo password={password}");
        demo = Some(("demo".to_string(), password));
    }
    let reloader = std::sync::Arc::new(FromFiles {
        args: args.clone(),
        log,
        dev_secrets: (
            cfg.keys.access_secret.clone(),
            cfg.keys.refresh_secret.clone(),
        ),
        demo,
    });
    let tokio_rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dev = args.dev;
    let origin = cfg.server.public_origin.origin.clone();
    let result = tokio_rt.block_on(sessiongate::server::run(
        cfg,
        users,
        reloader,
        shutdown_signal(),
        move |b| {
            let http = b.http.map_or_else(|| "off".to_string(), |a| a.to_string());
            let admin = b.admin.map_or_else(|| "off".to_string(), |a| a.to_string());
            println!(
                "sessiongate ready https={} http={http} admin={admin}",
                b.https
            );
            if dev {
                println!("open {origin}/ in your browser");
            }
            tracing::info!(https = %b.https, http = %http, admin = %admin, "listening");
        },
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiongate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}
