//! A TCP proxy that a test can cut and heal: put it between a node and NATS to partition
//! that node from the cluster without touching the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; stops when dropped.
pub struct CuttableProxy {
    pub address: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut, so live connections end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Forwards a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target).await
    }

    /// Forwards `bind` (port 0: a free one) to `target`: a loopback service, reached from
    /// a test host in another network namespace.
    pub async fn start_on(bind: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind the proxy");
        let address = listener.local_addr().expect("bound address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            Arc::clone(&cut),
            generation.clone(),
        ));
        Self {
            address,
            cut,
            generation,
            task,
        }
    }

    /// Drops every connection and refuses new ones until [`CuttableProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cuts = generation.subscribe();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cuts.changed() => {}
            }
        });
    }
}
