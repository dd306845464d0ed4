//! `wss://` through the one `ClientBuilder::connect` (feature `rustls`),
//! against a tokio-rustls server on 127.0.0.1 with a self-signed
//! certificate, and `ws://` through the same call.
#![cfg(feature = "rustls")]

use std::sync::Arc;
use tokio::net::TcpListener;
use weft_core::IntoClientRequest;
use weft_core::handshake::HandshakeError;
use weft_core::tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use weft_core::tokio_rustls::rustls::{self, RootCertStore};
use weft_core::tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_core::{ClientBuilder, Error, MaybeTlsStream, Message, ServerBuilder};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate for 127.0.0.1, and a client config trusting only it.
fn certificate() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A TLS echo server for one connection; returns its port.
async fn tls_echo_server(config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(tls) = TlsAcceptor::from(config).accept(tcp).await else {
            return;
        };
        let Ok(mut ws) = ServerBuilder::new().accept(tls).await else {
            return;
        };
        while let Some(Ok(m)) = ws.recv().await {
            if m.is_data() && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    port
}

#[tokio::test]
async fn wss_echo_with_a_trusted_certificate() {
    let (server, client) = certificate();
    let port = tls_echo_server(server).await;
    let mut request = format!("wss://127.0.0.1:{port}/chat")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer t".parse().unwrap());
    let (mut ws, response) = ClientBuilder::new()
        .tls_config(client)
        .connect(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert!(matches!(ws.get_ref(), MaybeTlsStream::Rustls(_)));
    assert!(ws.get_ref().is_tls());
    assert_eq!(ws.get_ref().tcp_stream().peer_addr().unwrap().port(), port);
    let big = vec![7u8; 200_000];
    ws.send(Message::text("hello over TLS")).await.unwrap();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("hello over TLS")
    );
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
    ws.close(weft_core::CloseCode::NORMAL, "bye").await.unwrap();
}

#[tokio::test]
async fn one_builder_connects_to_ws_and_wss() {
    let (server, client) = certificate();
    let tls_port = tls_echo_server(server).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = ServerBuilder::new().accept(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.recv().await {
            if m.is_data() && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    let builder = ClientBuilder::new().tls_config(client);
    for url in [
        format!("wss://127.0.0.1:{tls_port}/"),
        format!("ws://{plain}/"),
    ] {
        let (mut ws, _) = builder.connect(&url).await.unwrap();
        assert_eq!(ws.get_ref().is_tls(), url.starts_with("wss:"), "{url}");
        ws.send(Message::text(url.as_str())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(url.as_str())
        );
    }
}

#[tokio::test]
async fn untrusted_certificate_fails_the_tls_handshake() {
    let (server, _) = certificate();
    let port = tls_echo_server(server).await;
    // The default configuration (here through the free `connect`) trusts
    // Mozilla's roots, not our certificate.
    let err = weft_core::connect(format!("wss://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    match err {
        Error::Handshake(HandshakeError::Io(e)) => {
            assert!(e.to_string().contains("certificate"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn other_schemes_are_invalid_urls() {
    let e = ClientBuilder::new()
        .connect("https://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Handshake(HandshakeError::InvalidUrl(_))),
        "{e}"
    );
}

#[tokio::test]
async fn connect_on_accepts_a_tls_stream_made_elsewhere() {
    let (server, client) = certificate();
    let port = tls_echo_server(server).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
    let (mut ws, _) = ClientBuilder::new()
        .connect_on(tls, &format!("wss://127.0.0.1:{port}/"))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("x"));
}
