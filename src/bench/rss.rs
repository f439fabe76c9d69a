//! Finds a local server's process from its listening port (`/proc/net/tcp*` socket inode →
//! `/proc/*/fd`) and reads its resident memory (`VmRSS`). Linux only; elsewhere: `None`.

use std::fs;

/// The port of a `ws://host:port/…` or `http://host:port` URL.
fn port_of(url: &str) -> Option<u16> {
    let after_scheme = url.split_once("://")?.1;
    let host_port = after_scheme.split('/').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// Inodes of sockets listening on `port`.
fn listening_inodes(port: u16) -> Vec<String> {
    let wanted = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit_once(':')?.1;
                    let listening = *fields.get(3)? == "0A";
                    let inode = fields.get(9)?;
                    (listening && local_port == wanted).then(|| (*inode).to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The process listening on the URL's port, if it is on this machine and visible.
pub(crate) fn pid_listening_on(url: &str) -> Option<u32> {
    let inodes = listening_inodes(port_of(url)?);
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    for process in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(descriptors) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for descriptor in descriptors.flatten() {
            if let Ok(link) = fs::read_link(descriptor.path())
                && targets
                    .iter()
                    .any(|target| link.as_os_str() == target.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Resident memory of `pid`, in bytes.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_from_urls() {
        assert_eq!(port_of("ws://127.0.0.1:8787/ws"), Some(8787));
        assert_eq!(port_of("http://[::1]:9000"), Some(9000));
        assert_eq!(port_of("nonsense"), None);
    }

    #[test]
    fn finds_this_process_by_its_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pid = pid_listening_on(&format!("http://127.0.0.1:{port}"));
        assert_eq!(pid, Some(std::process::id()));
        assert!(resident_bytes(std::process::id()).unwrap() > 0);
    }
}
