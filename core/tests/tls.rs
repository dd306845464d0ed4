//! `wss://` through `ClientBuilder::connect_tls` (feature `rustls`), against
//! a tokio-rustls server on 127.0.0.1 with a self-signed certificate.
#![cfg(feature = "rustls")]

use std::sync::Arc;
use tokio::net::TcpListener;
use weft_core::handshake::HandshakeError;
use weft_core::tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use weft_core::tokio_rustls::rustls::{self, RootCertStore};
use weft_core::tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_core::{ClientBuilder, Error, Message, ServerBuilder};

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
    let (mut ws, response) = ClientBuilder::new()
        .tls_config(client)
        .connect_tls(&format!("wss://127.0.0.1:{port}/chat"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
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
async fn untrusted_certificate_fails_the_tls_handshake() {
    let (server, _) = certificate();
    let port = tls_echo_server(server).await;
    // The default configuration trusts Mozilla's roots, not our certificate.
    let err = ClientBuilder::new()
        .connect_tls(&format!("wss://127.0.0.1:{port}/"))
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
async fn wrong_schemes_are_refused_with_a_pointer() {
    let e = ClientBuilder::new()
        .connect_tls("ws://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("connect_tls needs a wss:// URL"),
        "{e}"
    );
    let e = ClientBuilder::new()
        .connect("wss://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("connect_tls"), "{e}");
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
