//! A real RTMP server for the stream output tests: Debian's nginx with its RTMP module
//! (`libnginx-mod-rtmp`), one process on loopback (no daemon, no master), relaying what is
//! published to `rtmp://127.0.0.1:{port}/live/{key}` to whoever plays it. Stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Option<Child>,
    conf: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path, port: u16) -> Self {
        let dir = dir.join(format!("nginx-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
                 daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 64; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut n = Nginx { child: None, conf, dir, port };
        n.resume();
        n
    }

    /// (Re)starts the server on its port and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nginx is running");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (apt install nginx libnginx-mod-rtmp)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (by PID): every publisher and player connection drops.
    pub fn pause(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.pause();
    }
}
