//! `server.pid_file`: the running gateway's process id, written once it is ready and removed
//! when it stops, so that `sessiongate reload` (and service managers) can signal it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("holds no process id")]
    Garbage,
    #[error("process {pid} cannot be signalled (not running, or another user's): {source}")]
    Signal {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
}

/// The pid file of this process; removed on drop.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn write(path: &Path) -> std::io::Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// SIGHUP to the process named in `path`; its pid.
pub fn signal_reload(path: &Path) -> Result<i32, PidFileError> {
    let text = std::fs::read_to_string(path).map_err(PidFileError::Read)?;
    let raw: i32 = text.trim().parse().map_err(|_| PidFileError::Garbage)?;
    let pid = rustix::process::Pid::from_raw(raw).ok_or(PidFileError::Garbage)?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        PidFileError::Signal {
            pid: raw,
            source: e.into(),
        }
    })?;
    Ok(raw)
}
