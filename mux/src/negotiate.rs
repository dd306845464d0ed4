//! Negotiating `mux` on the physical connection (docs/specs/mux.md §2).
//!
//! The client offers `mux; quota=N`: N (0 ≤ N < 2^32) becomes the server's
//! initial send quota on the implicit channel 1. The server answers with the
//! token the client offered: `mux`, or `mux_DO_NOT_USE`, the only token
//! pywebsocket (variant B's reference implementation) speaks (§11.1).
//!
//! The two wire formats have their own tokens, so they cannot be confused:
//! [`MuxFactory`] (variant B) negotiates only `mux` and `mux_DO_NOT_USE`, [`GoogleMuxFactory`]
//! (variant A) only `x-google-mux` (the name Jetty 7/8's google-mux-02 stub
//! and the 2011 proposal used; the digest, §2, could not confirm the
//! registered -03 name). A server of one variant declines the other's
//! offer, so a client of the other variant gets no mux and refuses the
//! connection. `x-google-mux` used to be accepted as an alias of `mux`: it
//! no longer is, since a peer offering it expects variant A framing.
//!
//! Extensions listed *before* `mux` would apply to logical channels and ones
//! *after* it to the physical connection. This implementation negotiates
//! logical extensions in each channel's own handshake instead, so the server
//! declines `mux` when anything was accepted before it, and [`UnlessMux`]
//! keeps history-based compression off a physical connection that carries
//! mux (it would share one context across channels: an information leak).

use crate::config::MuxVariant;
use std::sync::Arc;
use weft_core::ext::{Acceptance, Extension, ExtensionFactory, ExtensionHeader, NegotiationError};

/// The extension token of variant B.
pub const MUX: &str = "mux";
/// The extension token of variant A.
pub const X_GOOGLE_MUX: &str = "x-google-mux";
/// The token pywebsocket, the reference implementation of variant B,
/// negotiates (docs/specs/mux.md §11.1); a variant B server answers it as
/// an alias of [`MUX`], with the token the client offered.
pub const MUX_DO_NOT_USE: &str = "mux_DO_NOT_USE";

/// True for a variant B token ([`MUX`] or its alias [`MUX_DO_NOT_USE`]),
/// ASCII case-insensitively as extension tokens compare.
pub fn is_variant_b_token(name: &str) -> bool {
    name.eq_ignore_ascii_case(MUX) || name.eq_ignore_ascii_case(MUX_DO_NOT_USE)
}

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
    /// The wire format the token stands for.
    pub variant: MuxVariant,
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

/// The client's checks of a mux answer, for both variants: nothing
/// accepted before it (logical-channel extensions are negotiated per
/// channel) and no parameters (neither variant's server sends any).
fn check_answer(
    token: &str,
    response: &ExtensionHeader,
    accepted: &[Extension],
) -> Result<(), NegotiationError> {
    if !accepted.is_empty() {
        return Err(NegotiationError::rejected(
            token,
            "logical-channel extensions before mux are not supported",
        ));
    }
    if !response.params.is_empty() {
        return Err(NegotiationError::rejected(
            token,
            "unexpected parameters in the answer",
        ));
    }
    Ok(())
}

impl MuxNegotiated {
    /// The negotiated extension: no RSV bit, no transform (the physical
    /// connection's messages are mux messages), these parameters attached.
    fn into_extension(self) -> Extension {
        Extension::passthrough().with_params(self)
    }
}

impl ExtensionFactory for MuxFactory {
    fn name(&self) -> &str {
        MUX
    }
    fn aliases(&self) -> &[&str] {
        &[MUX_DO_NOT_USE]
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
        accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        check_answer(MUX, response, accepted)?;
        let token = response.name.clone();
        Ok(MuxNegotiated {
            token,
            variant: MuxVariant::B,
            quota: self.quota,
        }
        .into_extension())
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if !accepted.is_empty() {
            return Ok(None);
        }
        let Ok(quota) = parse_quota(offer) else {
            return Ok(None);
        };
        let token = offer.name.clone();
        let response = ExtensionHeader::new(token.clone());
        Ok(Some((
            response,
            MuxNegotiated {
                token,
                variant: MuxVariant::B,
                quota,
            }
            .into_extension(),
        )))
    }
}

/// Negotiates variant A, `x-google-mux`, in either role. It has no
/// parameters: variant A has no flow control, so there is no quota to
/// offer, and an offer with parameters (whose meaning at -03 is unknown) is
/// declined rather than guessed at. Like [`MuxFactory`], the server declines
/// when an extension was accepted before it, and the client refuses such an
/// answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleMuxFactory;

impl GoogleMuxFactory {
    fn negotiated() -> Extension {
        MuxNegotiated {
            token: X_GOOGLE_MUX.to_owned(),
            variant: MuxVariant::A,
            quota: 0,
        }
        .into_extension()
    }
}

impl ExtensionFactory for GoogleMuxFactory {
    fn name(&self) -> &str {
        X_GOOGLE_MUX
    }
    fn offers(&self) -> Vec<ExtensionHeader> {
        vec![ExtensionHeader::new(X_GOOGLE_MUX)]
    }
    fn accept(
        &self,
        response: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Extension, NegotiationError> {
        check_answer(X_GOOGLE_MUX, response, accepted)?;
        Ok(Self::negotiated())
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if !accepted.is_empty() || !offer.params.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            ExtensionHeader::new(X_GOOGLE_MUX),
            Self::negotiated(),
        )))
    }
}

/// Wraps a server extension factory so it declines whenever `mux` was
/// accepted before it on the same connection.
pub struct UnlessMux(pub Arc<dyn ExtensionFactory>);

impl ExtensionFactory for UnlessMux {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn aliases(&self) -> &[&str] {
        self.0.aliases()
    }
    fn negotiate(
        &self,
        offer: &ExtensionHeader,
        accepted: &[Extension],
    ) -> Result<Option<Acceptance>, NegotiationError> {
        if find_mux(accepted).is_some() {
            return Ok(None);
        }
        self.0.negotiate(offer, accepted)
    }
}

/// The negotiated mux of a connection, if any.
pub fn find_mux(extensions: &[Extension]) -> Option<&MuxNegotiated> {
    extensions
        .iter()
        .find_map(Extension::params::<MuxNegotiated>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::ext::{client_accept, format_extensions, parse_extensions, server_negotiate};

    #[test]
    fn negotiation() {
        let server: Vec<Arc<dyn ExtensionFactory>> = vec![
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
        // pywebsocket's token is answered as offered, and is variant B.
        let n = server_negotiate(
            &server,
            &parse_extensions(["mux_DO_NOT_USE; quota=5"]).unwrap(),
        )
        .unwrap();
        assert_eq!(format_extensions(n.headers()), "mux_DO_NOT_USE");
        let m = find_mux(n.extensions()).unwrap();
        assert_eq!((m.variant, m.quota), (MuxVariant::B, 5));
        assert!(is_variant_b_token("MUX_do_not_use") && is_variant_b_token("Mux"));
        assert!(!is_variant_b_token(X_GOOGLE_MUX));
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
        // Variant A's token is not an alias of variant B's.
        let n = server_negotiate(&server, &parse_extensions(["x-google-mux"]).unwrap()).unwrap();
        assert_eq!(format_extensions(n.headers()), "");
        assert!(find_mux(n.extensions()).is_none());
        let client: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(MuxFactory { quota: 65536 })];
        assert_eq!(format_extensions(&client[0].offers()), "mux; quota=65536");
        assert!(client_accept(&client, &parse_extensions(["mux"]).unwrap()).is_ok());
        assert!(client_accept(&client, &parse_extensions(["mux; quota=1"]).unwrap()).is_err());
    }

    #[test]
    fn variant_a_negotiation_keeps_the_variants_apart() {
        let a_server: Vec<Arc<dyn ExtensionFactory>> = vec![
            Arc::new(GoogleMuxFactory),
            Arc::new(UnlessMux(Arc::new(weft_core_test_ext()))),
        ];
        let n = server_negotiate(
            &a_server,
            &parse_extensions(["x-google-mux, x-test"]).unwrap(),
        )
        .unwrap();
        assert_eq!(format_extensions(n.headers()), "x-google-mux");
        let m = find_mux(n.extensions()).unwrap();
        assert_eq!((m.variant, m.token.as_str()), (MuxVariant::A, X_GOOGLE_MUX));
        // A variant A server declines a variant B offer, and parameters it
        // cannot interpret, and anything before it.
        for declined in [
            "mux; quota=8192",
            "mux",
            "x-google-mux; quota=1",
            "x-test, x-google-mux",
        ] {
            let n = server_negotiate(&a_server, &parse_extensions([declined]).unwrap()).unwrap();
            assert!(find_mux(n.extensions()).is_none(), "{declined}");
        }
        let a_client: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(GoogleMuxFactory)];
        assert_eq!(format_extensions(&a_client[0].offers()), "x-google-mux");
        let ok = client_accept(&a_client, &parse_extensions(["x-google-mux"]).unwrap()).unwrap();
        assert_eq!(find_mux(ok.extensions()).unwrap().variant, MuxVariant::A);
        // Answers it did not offer: refused, so the physical handshake fails.
        assert!(client_accept(&a_client, &parse_extensions(["mux"]).unwrap()).is_err());
        assert!(
            client_accept(
                &a_client,
                &parse_extensions(["x-google-mux; quota=1"]).unwrap()
            )
            .is_err()
        );
        let b_client: Vec<Arc<dyn ExtensionFactory>> = vec![Arc::new(MuxFactory { quota: 1 })];
        assert!(client_accept(&b_client, &parse_extensions(["x-google-mux"]).unwrap()).is_err());
    }

    /// A stand-in physical extension that accepts `x-test`.
    fn weft_core_test_ext() -> impl ExtensionFactory {
        struct T;
        impl ExtensionFactory for T {
            fn name(&self) -> &str {
                "x-test"
            }
            fn negotiate(
                &self,
                o: &ExtensionHeader,
                _: &[Extension],
            ) -> Result<Option<Acceptance>, NegotiationError> {
                Ok(Some((o.clone(), Extension::passthrough())))
            }
        }
        T
    }
}
