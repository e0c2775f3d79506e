//! The `sessiongate` command line. Everything else lives in the library.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates small, short-lived objects on several threads; glibc's
/// malloc showed up at ~7% of the profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sessiongate::config::{self, Config, ConfigErrors, LoadOptions};
use sessiongate::login::users::Users;
use sessiongate::preflight::{self, Checked};

#[derive(Parser)]
#[command(
    name = "sessiongate",
    version = sessiongate::version::LONG,
    about = "A TLS-terminating reverse proxy that owns the sessions of the apps behind it"
)]
struct Cli {
    /// The configuration file, before or after the command. Relative paths inside it are read
    /// from its directory.
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "SESSIONGATE_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (the default command).
    Run(RunArgs),
    /// Check a configuration: exit 0, or one line per problem naming its key.
    CheckConfig {
        /// Check as `run --dev` would start (missing certificate, secrets, upstream allowed).
        #[arg(long)]
        dev: bool,
    },
    /// Read a password on standard input, print its argon2id PHC string for users.toml.
    HashPassword,
    /// Print a random secret (32 bytes, base64url) for keys.*_secret_env.
    GenSecret,
    /// Make an Ed25519 private key (PKCS#8 PEM) for keys.assertion_key_file.
    GenKey {
        /// Write it to this new file (mode 0600; an existing file is never overwritten)
        /// instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Exit 0 when the running gateway is ready: `GET /readyz` on `server.admin_listen`
    /// answers 200 (for container health checks). Reads only that key of the configuration,
    /// so it needs none of the secrets.
    Healthcheck {
        /// Give up after this long (connect and answer).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Tell the running gateway to reload its configuration: SIGHUP to the pid in
    /// `server.pid_file`.
    Reload,
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
    /// Laptop mode: create what is missing (certificate, secrets, demo user, whoami upstream).
    #[arg(long)]
    dev: bool,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.cmd.unwrap_or(Cmd::Run(RunArgs { dev: false })) {
        Cmd::Run(args) => run(&config, args),
        Cmd::CheckConfig { dev } => check_config(&config, dev),
        Cmd::HashPassword => hash_password(),
        Cmd::GenSecret => {
            println!("{}", sessiongate::util::random_token(32));
            ExitCode::SUCCESS
        }
        Cmd::GenKey { out } => gen_key(out.as_deref()),
        Cmd::Healthcheck { timeout } => healthcheck(&config, timeout),
        Cmd::Reload => signal_reload(&config),
        Cmd::DevCert { cert, key, force } => dev_cert(&cert, &key, force),
    }
}

fn check_config(config: &Path, dev: bool) -> ExitCode {
    let opts = LoadOptions { dev };
    let checked = config::read(config, opts)
        .and_then(|parsed| preflight::validate_and_check(parsed, opts, &config::System));
    match checked {
        Ok((cfg, checked)) => {
            print_warnings(&cfg, &checked);
            // What to register at each OpenID provider: information, not a problem.
            for line in cfg.oidc.registration(&cfg.server.public_origin) {
                println!("config info: {line}");
            }
            println!("{}: ok", config.display());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            ExitCode::FAILURE
        }
    }
}

/// What the configuration allows but an operator should know, on standard error whatever the
/// log level: `config warning: <key>: <message>`.
fn print_warnings(cfg: &Config, checked: &Checked) {
    for w in cfg.warnings.iter().chain(&checked.warnings) {
        eprintln!("config warning: {w}");
    }
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        eprintln!("config warning: log.level: RUST_LOG is set and replaces it");
    }
}

fn hash_password() -> ExitCode {
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

fn gen_key(out: Option<&Path>) -> ExitCode {
    let written = match out {
        None => sessiongate::dev::new_key_pem().map(|pem| print!("{pem}")),
        Some(path) => sessiongate::dev::write_key_file(path).map(|()| {
            println!(
                "wrote a new Ed25519 key to {} (mode 0600): set keys.assertion_key_file to it",
                path.display()
            )
        }),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn dev_cert(cert: &Path, key: &Path, force: bool) -> ExitCode {
    if !force && (cert.exists() || key.exists()) {
        eprintln!(
            "{} or {} exists; pass --force to overwrite",
            cert.display(),
            key.display()
        );
        return ExitCode::FAILURE;
    }
    match sessiongate::dev::write_dev_cert(cert, key) {
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

use sessiongate::logging::LogFilter;

/// How `run` reads its configuration again on SIGHUP: as at start, keeping what `--dev` made
/// up for this process (random secrets, the demo user), so a reload logs nobody out.
struct FromFiles {
    config: PathBuf,
    args: RunArgs,
    log: Option<LogFilter>,
    /// `--dev`: the random secrets of this process (rings of one), and the demo user.
    dev_secrets: (config::SecretRing, config::SecretRing),
    demo: Option<(String, String)>,
}

impl sessiongate::server::reload::Reload for FromFiles {
    fn load(&self) -> Result<(Config, Users), ConfigErrors> {
        let (mut cfg, mut users, notes) = prepare(&self.config, &self.args)?;
        if self.args.dev {
            let random = |key: &str| {
                notes
                    .iter()
                    .any(|n| n.starts_with(key) && n.contains("random"))
            };
            if random("keys.access_secret_env") {
                cfg.keys.access_secrets = self.dev_secrets.0.clone();
            }
            if random("keys.refresh_secret_env") {
                cfg.keys.refresh_secrets = self.dev_secrets.1.clone();
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
            let level = sessiongate::logging::filter(&cfg.log_level);
            if let Err(e) = handle.reload(level) {
                tracing::warn!(error = %e, "log.level: cannot apply the new level");
            }
        }
    }
}

/// `sessiongate healthcheck`: one line, exit 0 when ready and 1 otherwise (what container
/// health checks read: 0 healthy, 1 unhealthy).
fn healthcheck(config: &Path, timeout: std::time::Duration) -> ExitCode {
    match sessiongate::healthcheck::run(config, timeout) {
        Ok(line) => {
            println!("healthy: {line}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("unhealthy: {why}");
            ExitCode::FAILURE
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
fn prepare(config: &Path, args: &RunArgs) -> Result<(Config, Users, Vec<String>), ConfigErrors> {
    let opts = LoadOptions { dev: args.dev };
    let parsed = config::read(config, opts)?;
    // Only from keys that were read as written: a refused key holds its default.
    let created = if args.dev && parsed.problems.is_empty() {
        sessiongate::dev::create_missing_files(
            &parsed.raw.tls.cert,
            &parsed.raw.tls.key,
            parsed.raw.keys.assertion_key_file.as_deref(),
        )?
    } else {
        Vec::new()
    };
    let (mut cfg, checked) = preflight::validate_and_check(parsed, opts, &config::System)?;
    print_warnings(&cfg, &checked);
    let notes = [created, std::mem::take(&mut cfg.dev_notes), checked.notes].concat();
    Ok((cfg, checked.users, notes))
}

fn run(config: &Path, args: RunArgs) -> ExitCode {
    let (cfg, mut users, notes) = match prepare(config, &args) {
        Ok(prepared) => prepared,
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!(
                "sessiongate: not started ({} problem(s) in {})",
                errs.0.len(),
                config.display()
            );
            return ExitCode::from(2);
        }
    };
    let log = sessiongate::logging::init(&cfg.log_level, cfg.log_format);
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
        config: config.to_path_buf(),
        args: args.clone(),
        log,
        dev_secrets: (
            cfg.keys.access_secrets.clone(),
            cfg.keys.refresh_secrets.clone(),
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
            // On standard error, as a log event (standard output is the audit trail's when
            // audit.file is unset): every listener bound, revocations caught up with.
            tracing::info!(
                target: sessiongate::logging::LIFECYCLE,
                https = %b.https,
                http = %http,
                admin = %admin,
                "ready"
            );
            if dev {
                println!("open {origin}/ in your browser");
            }
        },
    ));
    // Spans still queued for the collector go out before the process ends.
    #[cfg(feature = "otel")]
    sessiongate::otel::shutdown();
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
