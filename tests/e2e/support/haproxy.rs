//! A real HAProxy (Debian's package) in TCP mode in front of the gateway, sending the PROXY
//! protocol (`send-proxy` for v1, `send-proxy-v2` for v2) as an L4 load balancer does. TLS
//! passes through it untouched. Killed on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::gateway::Gateway;
use super::util::free_port;

pub struct HaProxy {
    /// Where clients connect (`127.0.0.1`); HAProxy connects to the gateway from `127.0.0.1`.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    child: Child,
}

impl HaProxy {
    /// HAProxy forwarding to `backend` with `send` (`"send-proxy"` or `"send-proxy-v2"`).
    pub fn start(backend: SocketAddr, send: &str) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let cfg = format!(
            "global\n  maxconn 256\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend fe\n  bind {addr}\n  default_backend be\n\
             backend be\n  server gw {backend} {send}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db") // foreground, no daemon
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        HaProxy {
            addr,
            _dir: dir,
            child,
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// An HTTPS client like [`Gateway::client_from`] that reaches the gateway through `lb`.
    pub fn client_via(&self, lb: &HaProxy, local: std::net::IpAddr) -> reqwest::Client {
        self.client_at(lb.addr, local)
    }
}
