//! What the WebSocket bridges (Slack Socket Mode, the Discord Gateway) share: a TLS
//! connector with the Mozilla roots and an explicit crypto provider (several providers are
//! linked into the binary, so rustls cannot pick one by itself).

use std::sync::Arc;

use tokio_tungstenite::Connector;
use troupe_actors::bridge::{BridgeError, BridgeErrorKind};

/// rustls with the Mozilla roots and an explicit crypto provider (several are linked in).
pub(crate) fn tls_connector() -> Result<Connector, BridgeError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| BridgeError::new(BridgeErrorKind::Transient, format!("tls: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// A WebSocket to `url` (`wss://` through [`tls_connector`]).
pub(crate) async fn connect(
    url: &str,
    connector: &Connector,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector.clone()))
            .await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_connector_builds() {
        assert!(super::tls_connector().is_ok());
    }
}
