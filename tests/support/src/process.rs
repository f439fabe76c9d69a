//! Runs the real `troupe` binary for end-to-end tests: a fresh data dir, a free port, a
//! written config, and helpers to stop it gracefully (SIGTERM) or brutally (`kill -9`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running `troupe serve`.
pub struct TroupeProcess {
    pub address: SocketAddr,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    /// Kept so the directory lives as long as the process (and across restarts).
    _scratch: Option<tempfile::TempDir>,
    log_path: PathBuf,
    extra_env: Vec<(String, String)>,
    /// The network namespace it runs in, and the address it listens on there.
    host: Option<(String, SocketAddr)>,
}

impl TroupeProcess {
    /// Writes `config` and starts; the address and data dir come from `TROUPE_LISTEN` and
    /// `TROUPE_DATA_DIR`, so `config` may hold any section.
    pub async fn start(binary: &Path, config: &str) -> anyhow::Result<Self> {
        Self::start_with_env(binary, config, &[]).await
    }

    pub async fn start_with_env(
        binary: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        // Port 0: the node binds a free port itself and logs it, so parallel tests never race
        // for a port between choosing it and binding it.
        Self::launch_new(binary, config, env, None).await
    }

    /// Like [`TroupeProcess::start_with_env`], inside a test host's network namespace,
    /// listening on its address.
    pub async fn start_on_host(
        host: &crate::netns::NetHost,
        binary: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch_new(
            binary,
            config,
            env,
            Some((host.name.clone(), host.any_port())),
        )
        .await
    }

    async fn launch_new(
        binary: &Path,
        config: &str,
        env: &[(&str, &str)],
        host: Option<(String, SocketAddr)>,
    ) -> anyhow::Result<Self> {
        let scratch = tempfile::tempdir()?;
        let config_path = scratch.path().join("troupe.toml");
        std::fs::write(&config_path, config)?;
        let mut process = Self {
            address: host.as_ref().map_or_else(
                || SocketAddr::from(([127, 0, 0, 1], 0)),
                |(_, listen)| *listen,
            ),
            host,
            log_path: scratch.path().join("troupe.log"),
            data_dir: scratch.path().join("data"),
            config_path,
            binary: binary.to_owned(),
            child: None,
            _scratch: Some(scratch),
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        process.launch().await?;
        Ok(process)
    }

    /// Replaces the config the next [`TroupeProcess::restart`] reads.
    pub fn rewrite_config(&self, config: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config_path, config)?;
        Ok(())
    }

    /// Starts the binary again on the same config and data dir (after a stop or a kill).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("still running");
        }
        self.launch().await
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let log_offset = log.metadata()?.len() as usize;
        let (mut command, listen) = match &self.host {
            Some((namespace, listen)) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                (command, listen.to_string())
            }
            None => (Command::new(&self.binary), "127.0.0.1:0".to_owned()),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("TROUPE_TOKEN")
            .env_remove("TROUPE_CONFIG")
            .env_remove("ORT_DYLIB_PATH")
            .env("TROUPE_LISTEN", listen)
            .env("TROUPE_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().context("spawn troupe")?);
        self.wait_ready(log_offset, Duration::from_secs(20)).await
    }

    /// The address this launch logged (`listening on http://ADDRESS/`), if it did yet.
    fn logged_address(&self, log_offset: usize) -> Option<SocketAddr> {
        let log = self.log();
        let this_launch = log.get(log_offset..)?;
        let start = this_launch.find("listening on http://")? + "listening on http://".len();
        let rest = &this_launch[start..];
        rest[..rest.find('/')?].parse().ok()
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "troupe exited with {status} before ready; log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    async fn wait_ready(&mut self, log_offset: usize, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < limit {
            self.check_running()?;
            let Some(address) = self.logged_address(log_offset) else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            self.address = address;
            let url = format!("{}/readyz", self.http_url());
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "troupe was not ready within {limit:?}; log:\n{}",
            self.log()
        )
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.address)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// `kill -9`, then reap.
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for the exit; returns the exit code.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        self.signal("TERM")?;
        let started = Instant::now();
        let mut child = self.child.take().context("not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                bail!(
                    "troupe did not exit within {limit:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TroupeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
