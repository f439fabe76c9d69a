use super::*;
use crate::gateway::header_map as headers;

fn guard(bound: &str, hosts: &[&str], origins: &[&str]) -> RequestGuard {
    RequestGuard::new(
        bound.parse().unwrap(),
        hosts
            .iter()
            .map(|host| HostPattern::parse(host).unwrap())
            .collect(),
        origins.iter().map(|origin| (*origin).to_owned()).collect(),
    )
}

#[test]
fn a_loopback_node_answers_its_loopback_names_on_its_own_port_only() {
    let guard = guard("127.0.0.1:8787", &[], &[]);
    for host in [
        "127.0.0.1:8787",
        "127.1.2.3:8787",
        "localhost:8787",
        "LocalHost.:8787",
        "app.localhost:8787",
        "[::1]:8787",
        "[::ffff:127.0.0.1]:8787",
    ] {
        assert!(guard.host_allowed(host), "{host} names the node");
    }
    for host in [
        "evil.example:8787",
        "evil.example",
        "127.0.0.1:8788",
        "localhost",
        "localhost.evil.example:8787",
        "10.0.0.5:8787",
        "user@127.0.0.1:8787",
        "",
        "127.0.0.1:8787/x",
    ] {
        assert!(!guard.host_allowed(host), "{host} does not name the node");
    }
}

#[test]
fn a_node_on_all_interfaces_answers_any_address_on_its_port_but_no_other_name() {
    let guard = guard("0.0.0.0:8787", &[], &[]);
    assert!(guard.host_allowed("192.168.1.20:8787"));
    assert!(guard.host_allowed("localhost:8787"));
    assert!(!guard.host_allowed("192.168.1.20:9000"));
    assert!(!guard.host_allowed("assistant.example.com:8787"));
    let guard = self::guard("192.168.1.20:8787", &[], &[]);
    assert!(guard.host_allowed("192.168.1.20:8787"));
    assert!(!guard.host_allowed("192.168.1.21:8787"));
}

#[test]
fn allowed_hosts_name_the_node_behind_a_proxy_with_or_without_a_port() {
    let guard = guard(
        "127.0.0.1:8787",
        &["assistant.example.com", "*.home.example:443"],
        &[],
    );
    assert!(guard.host_allowed("assistant.example.com"));
    assert!(guard.host_allowed("Assistant.Example.com.:8443"));
    assert!(guard.host_allowed("a.home.example:443"));
    assert!(guard.host_allowed("a.b.home.example:443"));
    assert!(!guard.host_allowed("home.example:443"));
    assert!(!guard.host_allowed("evilhome.example:443"));
    assert!(!guard.host_allowed("a.home.example"));
    assert!(!guard.host_allowed("example.com"));
}

#[test]
fn host_patterns_are_validated_and_written_back_as_given() {
    for entry in [
        "example.com",
        "*.example.com",
        "example.com:8443",
        "[::1]:80",
    ] {
        let pattern = HostPattern::parse(entry).unwrap();
        assert_eq!(String::from(pattern), entry);
    }
    for entry in [
        "",
        "*",
        "a.*.example",
        "ex ample.com",
        "u@example.com",
        "*.",
        "a:b",
    ] {
        assert!(HostPattern::parse(entry).is_err(), "{entry:?} is refused");
    }
}

#[test]
fn a_rebound_name_is_refused_even_when_its_origin_matches_its_host() {
    let guard = guard("127.0.0.1:8787", &[], &[]);
    let rebinding = headers(&[
        ("host", "evil.example:8787"),
        ("origin", "http://evil.example:8787"),
    ]);
    assert_eq!(guard.check(&rebinding), Err(Refusal::Host));
    assert_eq!(guard.check(&HeaderMap::new()), Err(Refusal::Host));
}

#[test]
fn on_a_loopback_host_a_browser_origin_must_be_the_same_loopback_origin() {
    let guard = guard("127.0.0.1:8787", &[], &["https://app.example"]);
    let host = ("host", "127.0.0.1:8787");
    assert_eq!(guard.check(&headers(&[host])), Ok(()));
    for origin in [
        "http://127.0.0.1:8787",
        "http://127.0.0.1:8787/",
        "https://app.example",
    ] {
        assert_eq!(
            guard.check(&headers(&[host, ("origin", origin)])),
            Ok(()),
            "{origin}"
        );
    }
    for origin in [
        "http://localhost:8787",
        "http://127.0.0.1:8788",
        "http://evil.example",
        "null",
        "file://",
        "chrome-extension://abc",
    ] {
        assert_eq!(
            guard.check(&headers(&[host, ("origin", origin)])),
            Err(Refusal::Origin),
            "{origin}"
        );
    }
}

#[test]
fn behind_a_tls_proxy_the_https_origin_of_the_public_name_is_its_own() {
    let guard = guard("127.0.0.1:8787", &["assistant.example.com"], &[]);
    let host = ("host", "assistant.example.com");
    for origin in [
        "https://assistant.example.com",
        "https://assistant.example.com:443",
    ] {
        assert_eq!(guard.check(&headers(&[host, ("origin", origin)])), Ok(()));
    }
    assert_eq!(
        guard.check(&headers(&[host, ("origin", "https://evil.example")])),
        Err(Refusal::Origin)
    );
}
