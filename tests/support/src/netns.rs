//! Test hosts in network namespaces (`ip netns`, veth): each host is a namespace joined to
//! this one by a veth pair, with its own address. A test can cut a host off, so that its
//! packets vanish in both directions (no reset, no refusal: what a pulled cable or a dead
//! switch port does) and then heal it. Needs root and iproute2; [`NetHost::supported`]
//! says whether this machine has both.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};

/// One host: a namespace `name`, reached from here at `address` through the link `outside`.
pub struct NetHost {
    pub name: String,
    /// This namespace's end of the link.
    pub outside_address: Ipv4Addr,
    /// The host's address, inside its namespace.
    pub address: Ipv4Addr,
    outside: String,
    inside: String,
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

impl NetHost {
    /// Whether namespaces can be made here: root, with iproute2.
    pub fn supported() -> bool {
        let probe = format!("troupe-probe-{}", std::process::id());
        let made = ip(&["netns", "add", &probe]).is_ok();
        if made {
            let _ = ip(&["netns", "del", &probe]);
        }
        made
    }

    /// Makes host number `index` (0–63): the namespace, the veth pair and addresses in a
    /// /30 of its own, with loopback up inside.
    pub fn create(index: u8) -> anyhow::Result<Self> {
        let tag = std::process::id() % 100_000;
        let name = format!("trp{tag}h{index}");
        let outside = format!("trp{tag}o{index}");
        let inside = format!("trp{tag}i{index}");
        let base = 4 * u32::from(index % 64);
        let subnet = u32::from(Ipv4Addr::new(10, 213, (tag % 250) as u8, 0)) + base;
        let outside_address = Ipv4Addr::from(subnet + 1);
        let address = Ipv4Addr::from(subnet + 2);
        ip(&["netns", "add", &name])?;
        let host = Self {
            name,
            outside_address,
            address,
            outside,
            inside,
        };
        host.wire()?;
        Ok(host)
    }

    fn wire(&self) -> anyhow::Result<()> {
        let (name, outside, inside) = (&self.name, &self.outside, &self.inside);
        ip(&[
            "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.outside_address),
            "dev",
            outside,
        ])?;
        ip(&["link", "set", outside, "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/30", self.address),
            "dev",
            inside,
        ])?;
        ip(&["-n", name, "link", "set", inside, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The host's end of the link goes down: nothing it sends leaves, nothing sent to it
    /// arrives, and its peers hear nothing (their packets are dropped, not refused).
    pub fn cut(&self) -> anyhow::Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.inside, "down"])?;
        Ok(())
    }

    /// The link comes back, with its address and route.
    pub fn heal(&self) -> anyhow::Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.inside, "up"])?;
        Ok(())
    }

    /// `program` to run inside the namespace (`ip netns exec`, which execs it: the child's
    /// pid is the program's).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// An address on the host, port 0: the program picks a free port.
    pub fn any_port(&self) -> SocketAddr {
        SocketAddr::from((self.address, 0))
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outside]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
