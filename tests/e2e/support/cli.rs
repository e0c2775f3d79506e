//! The `sessiongate` command line as an operator types it: any arguments, in any working
//! directory, with an environment of the test's choosing (nothing of the test process's own
//! `RUST_LOG` or `SESSIONGATE_CONFIG` leaks in); and `run` until it is ready or exits.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::util::bin;

/// What one finished command did.
#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Both streams, for messages and searches.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn command<S: AsRef<OsStr>>(args: &[S], cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("SESSIONGATE_CONFIG")
        .env_remove("SESSIONGATE_ACCESS_SECRET")
        .env_remove("SESSIONGATE_REFRESH_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Run `sessiongate <args>` in `cwd` and wait (at most 60 s) for it to exit.
pub fn sessiongate<S: AsRef<OsStr>>(args: &[S], cwd: &Path, env: &[(&str, &str)]) -> CliOutput {
    let mut child = command(args, cwd, env).spawn().expect("spawn sessiongate");
    let out_thread = drain(child.stdout.take());
    let err_thread = drain(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sessiongate") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sessiongate {:?} did not exit within 60 s", os_args(args));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        ok: status.success(),
        code: status.code(),
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

fn os_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

fn drain<R: Read + Send + 'static>(stream: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = stream {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// A `sessiongate run` that logged its `ready` event; killed when dropped.
pub struct Running {
    pub child: Child,
    /// Standard error up to and including the ready event.
    pub stderr_until_ready: String,
    stderr: Option<std::thread::JoinHandle<String>>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// Stop it and return what it wrote on standard error.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `sessiongate <args>` (a `run`) in `cwd` and wait (at most 60 s) for its `ready`
/// event on standard error; `Err` with what it printed when it exits first.
pub fn run_until_ready<S: AsRef<OsStr>>(
    args: &[S],
    cwd: &Path,
    env: &[(&str, &str)],
) -> Result<Running, CliOutput> {
    let mut child = command(args, cwd, env).spawn().expect("spawn sessiongate");
    let stdout = drain(child.stdout.take());
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let stderr = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if super::launch::ready_event(&line).is_some() {
                let _ = tx.send(Some(seen.clone()));
            }
        }
        let _ = tx.send(None);
        let _ = tx.send(Some(seen.clone()));
        seen
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(seen)) => Ok(Running {
            child,
            stderr_until_ready: seen,
            stderr: Some(stderr),
            stdout: Some(stdout),
        }),
        Ok(None) => {
            let status = child.wait().expect("wait for sessiongate");
            Err(CliOutput {
                ok: status.success(),
                code: status.code(),
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            })
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sessiongate {:?}: no ready line within 60 s ({e}); stderr:\n{}",
                os_args(args),
                stderr.join().unwrap_or_default()
            );
        }
    }
}
