//! A deployment as an operator lays it out: `etc/gateway.toml` beside the files it names by
//! *relative* paths (`tls/cert.pem`, `tls/key.pem`, `users.toml`, `audit.log`), and a working
//! directory elsewhere (`elsewhere/`, empty) that the commands run in after
//! [`Site::run_elsewhere`], as a service manager starts a service in `/` (otherwise they run
//! in `etc/`, where relative paths mean the same whichever directory they are read from, so
//! that a test of another mistake is about that mistake alone). Keys are set per table
//! ([`Site::set`]) over a base that passes `check-config`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::cli::{CliOutput, Running, run_until_ready, sessiongate};
use super::pki::Pki;
use super::users::users_toml;
use super::util::{free_port, random_secret};

/// The base configuration, table by table (`upstream` is the one `[[upstream]]`).
const BASE: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "listen = \"127.0.0.1:0\"",
            "redirect_listen = \"127.0.0.1:0\"",
            "admin_listen = \"127.0.0.1:0\"",
            "public_origin = \"https://localhost\"",
        ],
    ),
    ("tls", &["cert = \"tls/cert.pem\"", "key = \"tls/key.pem\""]),
    ("upstream", &["name = \"app\""]),
    (
        "keys",
        &[
            "access_secret_env = \"SG_TEST_ACCESS_SECRET\"",
            "refresh_secret_env = \"SG_TEST_REFRESH_SECRET\"",
        ],
    ),
    ("login", &["users_file = \"users.toml\""]),
    ("audit", &["file = \"audit.log\""]),
];

pub struct Site {
    pub root: tempfile::TempDir,
    /// The directory of the configuration file and of the files it names.
    pub etc: PathBuf,
    /// The working directory of the commands.
    pub elsewhere: PathBuf,
    pub pki: Pki,
    /// `(table, "key = value")` over [`BASE`], in order.
    lines: Vec<(String, String)>,
    pub access_secret: String,
    pub refresh_secret: String,
    upstream_url: String,
    /// More environment for the commands (`admin.token_env`'s variable, ...).
    extra_env: Vec<(String, String)>,
    /// Run the commands in `elsewhere/` rather than `etc/`.
    elsewhere_cwd: bool,
    /// Written after the tables, verbatim ([`Site::append`]).
    tail: String,
}

impl Site {
    pub fn new() -> Site {
        let root = tempfile::Builder::new()
            .prefix("sessiongate-site-")
            .tempdir()
            .expect("tempdir");
        let etc = root.path().join("etc");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(etc.join("tls")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let pki = Pki::generate(&etc.join("tls"));
        std::fs::write(etc.join("users.toml"), users_toml()).unwrap();
        let site = Site {
            root,
            etc,
            elsewhere,
            pki,
            lines: Vec::new(),
            access_secret: random_secret(),
            refresh_secret: random_secret(),
            upstream_url: format!("http://127.0.0.1:{}", free_port()),
            extra_env: Vec::new(),
            elsewhere_cwd: false,
            tail: String::new(),
        };
        site.write();
        site
    }

    /// Set `line` (`key = value`, raw TOML) in `[table]`: replaces the base's line for that
    /// key, or adds it (and the table).
    pub fn set(mut self, table: &str, line: &str) -> Site {
        self.lines.push((table.into(), line.into()));
        self.write();
        self
    }

    /// Remove `key` from `[table]`.
    pub fn unset(self, table: &str, key: &str) -> Site {
        self.set(table, &format!("{key} = <unset>"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.etc.join("gateway.toml")
    }

    pub fn render(&self) -> String {
        let mut tables: Vec<(String, Vec<String>)> = BASE
            .iter()
            .map(|(t, lines)| {
                let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                if *t == "upstream" {
                    lines.push(format!("url = \"{}\"", self.upstream_url));
                }
                (t.to_string(), lines)
            })
            .collect();
        for (table, line) in &self.lines {
            let key = line.split('=').next().unwrap_or("").trim().to_string();
            let i = match tables.iter().position(|(t, _)| t == table) {
                Some(i) => i,
                None => {
                    tables.push((table.clone(), Vec::new()));
                    tables.len() - 1
                }
            };
            let lines = &mut tables[i].1;
            lines.retain(|l| l.split('=').next().unwrap_or("").trim() != key);
            if !line.ends_with("<unset>") {
                lines.push(line.clone());
            }
        }
        let mut s = String::new();
        for (table, lines) in tables {
            if table == "upstream" {
                s.push_str("[[upstream]]\n");
            } else {
                s.push_str(&format!("[{table}]\n"));
            }
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
            s.push('\n');
        }
        s.push_str(&self.tail);
        s
    }

    fn write(&self) {
        std::fs::write(self.config_path(), self.render()).unwrap();
    }

    /// Run the commands in `elsewhere/`, not in the configuration's directory.
    pub fn run_elsewhere(mut self) -> Site {
        self.elsewhere_cwd = true;
        self
    }

    /// Append `toml` verbatim after the tables (arrays of tables such as `[[oidc.provider]]`).
    pub fn append(mut self, toml: &str) -> Site {
        self.tail.push_str(toml);
        self.write();
        self
    }

    /// The commands' working directory.
    pub fn cwd(&self) -> &Path {
        if self.elsewhere_cwd {
            &self.elsewhere
        } else {
            &self.etc
        }
    }

    /// Add `name=value` to the commands' environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Site {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    fn env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("SG_TEST_ACCESS_SECRET", self.access_secret.as_str()),
            ("SG_TEST_REFRESH_SECRET", self.refresh_secret.as_str()),
        ];
        env.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env
    }

    /// `sessiongate check-config --config <etc/gateway.toml> [extra]`, run in [`Site::cwd`].
    pub fn check(&self, extra: &[&str]) -> CliOutput {
        let mut args: Vec<OsString> = vec!["check-config".into(), "--config".into()];
        args.push(self.config_path().into());
        args.extend(extra.iter().map(OsString::from));
        sessiongate(&args, self.cwd(), &self.env())
    }

    /// `sessiongate run --config <etc/gateway.toml> [extra]`, run in [`Site::cwd`].
    pub fn run(&self, extra: &[&str]) -> Result<Running, CliOutput> {
        let mut args: Vec<OsString> = vec!["run".into(), "--config".into()];
        args.push(self.config_path().into());
        args.extend(extra.iter().map(OsString::from));
        run_until_ready(&args, self.cwd(), &self.env())
    }

    /// `check` must fail and name `key`; returns the output.
    pub fn refused_naming(&self, key: &str, what: &str) -> String {
        let out = self.check(&[]);
        let text = out.text();
        assert!(
            !out.ok,
            "{what}: check-config should fail; config:\n{}\noutput:\n{text}",
            self.render()
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("config error: {key}: "))),
            "{what}: no `config error: {key}: ` line; config:\n{}\noutput:\n{text}",
            self.render()
        );
        text
    }

    /// `check` must pass; returns the output.
    pub fn accepted(&self, what: &str) -> String {
        let out = self.check(&[]);
        assert!(
            out.ok,
            "{what}: check-config should pass; config:\n{}\noutput:\n{}",
            self.render(),
            out.text()
        );
        out.text()
    }
}
