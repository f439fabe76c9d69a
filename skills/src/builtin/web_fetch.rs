//! `web_fetch`: fetches a web page for the model, refusing private, loopback, link-local
//! and other internal addresses (SSRF) unless the user allowed them. The check is made on
//! every address a name resolves to (a custom resolver, so what is checked is what is
//! connected to), on literal addresses, and on every redirect.

use crate::setup::SkillSetupError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{Value, json};
use troupe_actors::skill::{
    Requirements, Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest,
};

use super::{text_argument, tool};

const DEFAULT_MAX_BYTES: usize = 256 * 1024;
const MAX_BYTES: usize = 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Whether an address is internal: loopback, private, link-local, shared, unspecified,
/// multicast, broadcast, documentation, or their IPv6 counterparts.
pub(super) fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            if embedded_ipv4(v6)
                .iter()
                .any(|v4| is_internal(IpAddr::V4(*v4)))
            {
                return true;
            }
            let [first, second, third, fourth, ..] = v6.segments();
            v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
                || (first == 0x2001 && second == 0x0db8) // documentation
                || (first == 0x0064 && second == 0xff9b && third == 0x0001) // local-use NAT64
                || (first == 0x0100 && second == 0 && third == 0 && fourth == 0) // discard-only
        }
    }
}

/// The IPv4 addresses an IPv6 address carries, which decide where it leads: mapped
/// (`::ffff:a.b.c.d`), translated (`::ffff:0:a.b.c.d`), compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`), and Teredo's server and client.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Vec<std::net::Ipv4Addr> {
    let segments = v6.segments();
    let octets = v6.octets();
    let last = std::net::Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    let prefix_is = |prefix: &[u16]| segments[..prefix.len()] == *prefix;
    if prefix_is(&[0, 0, 0, 0, 0, 0xffff])
        || prefix_is(&[0, 0, 0, 0, 0xffff, 0])
        || prefix_is(&[0, 0, 0, 0, 0, 0])
        || prefix_is(&[0x0064, 0xff9b, 0, 0, 0, 0])
    {
        return vec![last];
    }
    match segments[0] {
        0x2002 => vec![std::net::Ipv4Addr::new(
            octets[2], octets[3], octets[4], octets[5],
        )],
        0x2001 if segments[1] == 0 => {
            let server = std::net::Ipv4Addr::new(octets[4], octets[5], octets[6], octets[7]);
            let client = std::net::Ipv4Addr::from(!u32::from(last));
            vec![server, client]
        }
        _ => Vec::new(),
    }
}

/// Resolves names and drops internal addresses; fails when none is left.
#[derive(Debug)]
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves only to internal addresses").into());
            }
            let addresses: Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

/// The skill.
pub struct WebFetch {
    client: reqwest::Client,
    allow_private: bool,
}

/// Why a URL may not be fetched.
#[derive(Debug, thiserror::Error)]
enum UrlRefused {
    #[error("only http and https URLs can be fetched, not {0}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is an internal address")]
    Internal(reqwest::Url),
}

/// Refuses a URL that is not http(s) or names an internal address literally.
fn check_url(url: &reqwest::Url, allow_private: bool) -> Result<(), UrlRefused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme(url.scheme().to_owned()));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(UrlRefused::NoHost),
    };
    if !allow_private && literal.is_some_and(is_internal) {
        return Err(UrlRefused::Internal(url.clone()));
    }
    Ok(())
}

impl WebFetch {
    pub fn new(allow_private: bool) -> Result<Self, SkillSetupError> {
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(reason) => attempt.error(reason),
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("troupe-web-fetch/", env!("CARGO_PKG_VERSION")))
            .redirect(redirects)
            .no_proxy()
            .connect_timeout(Duration::from_secs(10));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder.build().map_err(SkillSetupError::Client)?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    async fn fetch(&self, url: &str, max_bytes: usize) -> Result<Value, SkillError> {
        let forbidden = |reason: String| SkillError::new(SkillErrorCode::Forbidden, reason);
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| SkillError::invalid(format!("`{url}` is not a URL: {error}")))?;
        check_url(&parsed, self.allow_private).map_err(|refused| forbidden(refused.to_string()))?;
        let response = self.client.get(parsed).send().await.map_err(|error| {
            let chain = error_chain(&error);
            if chain.contains("internal address") {
                forbidden(chain)
            } else {
                SkillError::failed(format!("the fetch failed: {chain}"))
            }
        })?;
        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| SkillError::failed(error_chain(&error)))?;
            let room = max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(
            json!({"url": final_url, "status": status, "content_type": content_type,
            "truncated": truncated, "text": String::from_utf8_lossy(&body)}),
        )
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl Skill for WebFetch {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "web_fetch".into(),
            description: "Fetches a public web page.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![tool(
                "fetch",
                "Fetches a URL (http or https) and returns its status, type and text.",
                json!({"type": "object", "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "max_bytes": {"type": "integer", "minimum": 1, "maximum": MAX_BYTES}},
                    "required": ["url"], "additionalProperties": false}),
            )],
            permissions: Requirements {
                network: true,
                files: false,
            },
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let url = text_argument(&call.arguments, "url")?;
        let max_bytes = call.arguments["max_bytes"]
            .as_u64()
            .map_or(DEFAULT_MAX_BYTES, |n| {
                usize::try_from(n).unwrap_or(MAX_BYTES)
            })
            .min(MAX_BYTES);
        self.fetch(url, max_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_internal_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            // IPv6 forms that lead to an internal IPv4 address.
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "::127.0.0.1",
            "::10.1.2.3",
            "::ffff:0:192.168.1.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "fec0::1",
            "64:ff9b:1::1",
            "100::1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::1.1.1.1",
            "2002:0101:0101::1",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    async fn local_page() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello from inside" }))
            .route(
                "/hop",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/") }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn call(url: &str) -> SkillCall {
        SkillCall {
            call_id: "c".into(),
            action: "fetch".into(),
            arguments: json!({"url": url}),
            session: Default::default(),
        }
    }

    #[tokio::test]
    async fn refuses_internal_addresses_unless_allowed() {
        let address = local_page().await;
        let guarded = WebFetch::new(false).unwrap();
        for url in [
            format!("http://{address}/"),
            format!("http://localhost:{}/", address.port()),
            format!("http://[::1]:{}/", address.port()),
            "http://169.254.169.254/latest/meta-data/".into(),
            "file:///etc/passwd".into(),
        ] {
            let error = guarded.execute(call(&url)).await.unwrap_err();
            assert_eq!(error.code, SkillErrorCode::Forbidden, "{url}: {error:?}");
        }
        let allowed = WebFetch::new(true).unwrap();
        let page = allowed
            .execute(call(&format!("http://{address}/hop")))
            .await
            .unwrap();
        assert_eq!(page["status"], 200);
        assert_eq!(page["text"], "hello from inside");
        assert!(
            page["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{address}/"))
        );
    }
}
