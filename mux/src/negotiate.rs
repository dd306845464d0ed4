//! Negotiating `mux` on the physical connection (digest §2).
//!
//! The client offers `mux; quota=N`: N (0 ≤ N < 2^32) becomes the server's
//! initial send quota on the implicit channel 1. The server answers `mux`
//! (with the token the client used; `x-google-mux` is accepted as an alias).
//!
//! Extensions listed *before* `mux` would apply to logical channels and ones
//! *after* it to the physical connection. This implementation negotiates
//! logical extensions in each channel's own handshake instead, so the server
//! declines `mux` when anything was accepted before it, and [`UnlessMux`]
//! keeps history-based compression off a physical connection that carries
//! mux (it would share one context across channels: an information leak).

use std::any::Any;
use std::sync::Arc;
use weft_core::ext::{
    Acceptance, ClientExtensionFactory, Extension, ExtensionDecoder, ExtensionEncoder,
    ExtensionError, ExtensionHeader, Granularity, NegotiationError, SendHints,
    ServerExtensionFactory,
};
use weft_core::{Frame, Rsv};

/// The extension token.
pub const MUX: &str = "mux";
/// An older alias accepted from clients.
pub const X_GOOGLE_MUX: &str = "x-google-mux";

/// Negotiates `mux` in either role. `quota` is what a client offers.
#[derive(Debug, Clone, Copy)]
pub struct MuxFactory {
    /// Client: the `quota` parameter offered.
    pub quota: u64,
}

/// A negotiated `mux`: it transforms no frame and owns no RSV bit; the
/// physical connection's messages are then mux messages.
#[derive(Debug, Clone)]
pub struct MuxNegotiated {
    /// The token agreed.
    pub token: String,
    /// The quota the client offered (the server's initial send quota on
    /// channel 1).
    pub quota: u64,
}

fn parse_quota(h: &ExtensionHeader) -> Result<u64, String> {
    let mut quota = None;
    for p in &h.params {
        match (p.name.as_str(), p.value.as_deref()) {
            ("quota", Some(v)) if quota.is_none() => {
                let q: u64 = v.parse().map_err(|_| format!("invalid quota {v:?}"))?;
                if q >= 1 << 32 || (v.len() > 1 && v.starts_with('0')) {
                    return Err(format!("invalid quota {v:?}"));
                }
                quota = Some(q);
            }
            (name, _) => return Err(format!("unexpected parameter {name}")),
        }
    }
    Ok(quota.unwrap_or(0))
}

impl ClientExtensionFactory for MuxFactory {
    fn name(&self) -> &str {
        MUX
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![
            ExtensionHeader::new(MUX)
                .param("quota", Some(self.quota.min((1 << 32) - 1).to_string())),
        ]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        accepted: &[Box<dyn Extension>],
    ) -> Result<Box<dyn Extension>, NegotiationError> {
        if !accepted.is_empty() {
            return Err(NegotiationError::rejected(
                MUX,
                "logical-channel extensions before mux are not supported",
            ));
        }
        if !response.params.is_empty() {
            return Err(NegotiationError::rejected(
                MUX,
                "unexpected parameters in the answer",
            ));
        }
        Ok(Box::new(MuxNegotiated {
            token: response.name.clone(),
            quota: self.quota,
        }))
    }
}

impl ServerExtensionFactory for MuxFactory {
    fn name(&self) -> &str {
        MUX
    }
    fn handles(&self, token: &str) -> bool {
        token.eq_ignore_ascii_case(MUX) || token.eq_ignore_ascii_case(X_GOOGLE_MUX)
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if !accepted.is_empty() {
            return Ok(None);
        }
        let Ok(quota) = parse_quota(offer) else {
            return Ok(None);
        };
        let token = offer.name.clone();
        Ok(Some((
            ExtensionHeader::new(token.clone()),
            Box::new(MuxNegotiated { token, quota }),
        )))
    }
}

struct Passthrough;

impl ExtensionEncoder for Passthrough {
    fn encode(&mut self, _: &mut Frame, _: &SendHints) -> Result<(), ExtensionError> {
        Ok(())
    }
}

impl ExtensionDecoder for Passthrough {
    fn decode(&mut self, _: &mut Frame, _: usize) -> Result<(), ExtensionError> {
        Ok(())
    }
}

impl Extension for MuxNegotiated {
    fn name(&self) -> &str {
        &self.token
    }
    fn rsv(&self) -> Rsv {
        Rsv::empty()
    }
    fn granularity(&self) -> Granularity {
        Granularity::PerMessage
    }
    fn split(self: Box<Self>) -> (Box<dyn ExtensionEncoder>, Box<dyn ExtensionDecoder>) {
        (Box::new(Passthrough), Box::new(Passthrough))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Wraps a server extension factory so it declines whenever `mux` was
/// accepted before it on the same connection.
pub struct UnlessMux(pub Arc<dyn ServerExtensionFactory>);

impl ServerExtensionFactory for UnlessMux {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn handles(&self, token: &str) -> bool {
        self.0.handles(token)
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Box<dyn Extension>],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if accepted.iter().any(|e| e.as_any().is::<MuxNegotiated>()) {
            return Ok(None);
        }
        self.0.negotiate(offer, accepted)
    }
}

/// The negotiated mux of a connection, if any.
pub fn find_mux(extensions: &[Box<dyn Extension>]) -> Option<&MuxNegotiated> {
    extensions
        .iter()
        .find_map(|e| e.as_any().downcast_ref::<MuxNegotiated>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::ext::{client_accept, format_extensions, parse_extensions, server_negotiate};

    #[test]
    fn negotiation() {
        let server: Vec<Arc<dyn ServerExtensionFactory>> = vec![
            Arc::new(MuxFactory { quota: 0 }),
            Arc::new(UnlessMux(Arc::new(weft_core_test_ext()))),
        ];
        let n = server_negotiate(
            &server,
            &parse_extensions(["mux; quota=8192, x-test"]).unwrap(),
        )
        .unwrap();
        assert_eq!(format_extensions(n.headers()), "mux");
        assert_eq!(find_mux(n.extensions()).unwrap().quota, 8192);
        let n = server_negotiate(&server, &parse_extensions(["x-test, mux"]).unwrap()).unwrap();
        assert_eq!(format_extensions(n.headers()), "x-test");
        for bad in [
            "mux; quota=4294967296",
            "mux; quota=x",
            "mux; quota=1; quota=2",
            "mux; foo",
        ] {
            let n = server_negotiate(&server, &parse_extensions([bad]).unwrap()).unwrap();
            assert!(n.headers().is_empty(), "{bad}");
        }
        let n = server_negotiate(&server, &parse_extensions(["x-google-mux"]).unwrap()).unwrap();
        assert_eq!(format_extensions(n.headers()), "x-google-mux");
        let client: Vec<Arc<dyn ClientExtensionFactory>> =
            vec![Arc::new(MuxFactory { quota: 65536 })];
        assert_eq!(format_extensions(&client[0].offers()), "mux; quota=65536");
        assert!(client_accept(&client, &parse_extensions(["mux"]).unwrap()).is_ok());
        assert!(client_accept(&client, &parse_extensions(["mux; quota=1"]).unwrap()).is_err());
    }

    /// A stand-in physical extension that accepts `x-test`.
    fn weft_core_test_ext() -> impl ServerExtensionFactory {
        struct T;
        impl ServerExtensionFactory for T {
            fn name(&self) -> &str {
                "x-test"
            }
            fn negotiate(
                &self,
                o: &ExtensionHeader,
                _: &[Box<dyn Extension>],
            ) -> Result<Option<Acceptance>, NegotiationError> {
                Ok(Some((
                    o.clone(),
                    Box::new(MuxNegotiated {
                        token: "x-test".into(),
                        quota: 0,
                    }),
                )))
            }
        }
        T
    }
}
