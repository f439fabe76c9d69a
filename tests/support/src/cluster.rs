//! `ClusterSandbox`: a real `nats-server` and N real `troupe serve` processes joined to it,
//! each on its own free port and data dir, with node ids `node-0`, `node-1`, …; a node can
//! be put behind a [`CuttableProxy`] to partition it from NATS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::nats::NatsServer;
use crate::process::TroupeProcess;
use crate::proxy::CuttableProxy;

/// The running cluster.
pub struct ClusterSandbox {
    pub nats: NatsServer,
    pub nodes: Vec<TroupeProcess>,
    /// `proxies[i]`: the proxy node `i` reaches NATS through, if any.
    pub proxies: Vec<Option<CuttableProxy>>,
}

impl ClusterSandbox {
    /// Starts NATS and `count` nodes sharing `config` (providers and so on; `[cluster]`
    /// comes from the environment). Nodes in `proxied` reach NATS through a proxy.
    pub async fn start(
        binary: &Path,
        count: usize,
        config: &str,
        proxied: &[usize],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(binary, count, config, proxied, &[]).await
    }

    /// Like [`ClusterSandbox::start`], with extra environment variables for every node.
    pub async fn start_with_env(
        binary: &Path,
        count: usize,
        config: &str,
        proxied: &[usize],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_on(
            NatsServer::start().await,
            binary,
            count,
            config,
            proxied,
            env,
        )
        .await
    }

    /// Like [`ClusterSandbox::start_with_env`], on a NATS server the caller started (and
    /// perhaps filled, as an older build would have).
    pub async fn start_on(
        nats: NatsServer,
        binary: &Path,
        count: usize,
        config: &str,
        proxied: &[usize],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_each(nats, binary, &vec![config; count], proxied, env).await
    }

    /// Like [`ClusterSandbox::start_on`], node `i` with `configs[i]` (nodes that differ:
    /// one with models, one without).
    pub async fn start_each(
        nats: NatsServer,
        binary: &Path,
        configs: &[&str],
        proxied: &[usize],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let count = configs.len();
        let mut nodes = Vec::with_capacity(count);
        let mut proxies = Vec::with_capacity(count);
        for (index, config) in configs.iter().enumerate() {
            let proxy = if proxied.contains(&index) {
                Some(CuttableProxy::start(([127, 0, 0, 1], nats.port()).into()).await)
            } else {
                None
            };
            let url = proxy
                .as_ref()
                .map_or_else(|| nats.url(), |proxy| format!("nats://{}", proxy.address));
            let node_id = format!("node-{index}");
            let mut node_env = vec![
                ("TROUPE_NATS_URL", url.as_str()),
                ("TROUPE_NODE_ID", node_id.as_str()),
            ];
            node_env.extend_from_slice(env);
            let node = TroupeProcess::start_with_env(binary, config, &node_env).await?;
            nodes.push(node);
            proxies.push(proxy);
        }
        Ok(Self {
            nats,
            nodes,
            proxies,
        })
    }

    /// `GET /api/v1/cluster` of node `index`.
    pub async fn view(&self, index: usize) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/cluster", self.nodes[index].http_url());
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// Waits until node `observer` sees exactly `members` and every shard owned by one of
    /// them, each member owning some.
    pub async fn wait_settled(
        &self,
        observer: usize,
        members: &[&str],
        shards: u64,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < limit {
            if let Ok(view) = self.view(observer).await {
                let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
                let ids: Vec<&str> = nodes
                    .iter()
                    .filter_map(|node| node["node_id"].as_str())
                    .collect();
                let owned: u64 = nodes
                    .iter()
                    .filter_map(|node| node["shards"].as_u64())
                    .sum();
                let everyone_serves = nodes.iter().all(|node| node["shards"].as_u64() > Some(0));
                if ids == members && owned == shards && everyone_serves {
                    return Ok(view);
                }
                last = view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the cluster did not settle on {members:?} within {limit:?}; last view: {last}")
    }
}
