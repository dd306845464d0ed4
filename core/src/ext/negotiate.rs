//! Extension negotiation for both roles (RFC 6455 §9.1).

use super::{
    DecoderChain, EncoderChain, Extension, ExtensionFactory, ExtensionHeader, Granularity,
    HeaderSyntaxError, handles,
};
use crate::proto::Rsv;
use std::sync::Arc;

/// Why extension negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The header does not follow the grammar.
    #[error(transparent)]
    Syntax(#[from] HeaderSyntaxError),
    /// The server answered with an extension the client did not offer.
    #[error("server accepted extension {0:?} that was not offered")]
    NotOffered(String),
    /// The server answered with the same extension twice.
    #[error("extension {0:?} accepted twice")]
    Duplicate(String),
    /// Two negotiated extensions claim the same RSV bit.
    #[error("extensions {first:?} and {second:?} both claim RSV bits {bits:?}")]
    RsvConflict {
        /// The extension accepted first.
        first: String,
        /// The extension accepted second.
        second: String,
        /// The contested bits.
        bits: Rsv,
    },
    /// A per-message extension placed after a per-frame extension.
    #[error(
        "per-message extension {per_message:?} cannot follow per-frame extension {per_frame:?}"
    )]
    Order {
        /// The per-frame extension that comes first.
        per_frame: String,
        /// The per-message extension that follows it.
        per_message: String,
    },
    /// An extension refused the offer or the answer (its own rules).
    #[error("extension {extension:?}: {reason}")]
    Rejected {
        /// The extension.
        extension: String,
        /// Why.
        reason: String,
    },
}

impl NegotiationError {
    /// Shorthand for [`NegotiationError::Rejected`].
    pub fn rejected(extension: impl Into<String>, reason: impl Into<String>) -> Self {
        NegotiationError::Rejected {
            extension: extension.into(),
            reason: reason.into(),
        }
    }
}

/// The outcome of negotiation: the extensions in application order with the
/// response elements that established them.
#[derive(Default)]
pub struct Negotiated {
    extensions: Vec<Extension>,
    headers: Vec<ExtensionHeader>,
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.headers).finish()
    }
}

impl Negotiated {
    /// No extensions.
    pub fn none() -> Self {
        Self::default()
    }

    /// The response elements, in order (what `Sec-WebSocket-Extensions` said).
    pub fn headers(&self) -> &[ExtensionHeader] {
        &self.headers
    }

    /// The negotiated extensions, in order.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// Adds an extension, named after `header`, after checking RSV
    /// conflicts and ordering.
    pub fn push(
        &mut self,
        header: ExtensionHeader,
        ext: Extension,
    ) -> Result<(), NegotiationError> {
        let ext = ext.named(&header.name);
        check_compatible(&self.extensions, &ext)?;
        self.extensions.push(ext);
        self.headers.push(header);
        Ok(())
    }

    /// Takes the negotiated extensions apart (response element and
    /// extension, in order), e.g. to filter them before building a session.
    pub fn into_parts(self) -> Vec<(ExtensionHeader, Extension)> {
        self.headers.into_iter().zip(self.extensions).collect()
    }

    /// Builds the two chains.
    pub(crate) fn into_chains(self) -> (EncoderChain, DecoderChain) {
        super::chain::build(self.extensions)
    }
}

fn check_compatible(accepted: &[Extension], new: &Extension) -> Result<(), NegotiationError> {
    for prev in accepted {
        let bits = prev.rsv() & new.rsv();
        if !bits.is_empty() {
            return Err(NegotiationError::RsvConflict {
                first: prev.name().to_owned(),
                second: new.name().to_owned(),
                bits,
            });
        }
        if prev.granularity() == Granularity::PerFrame
            && new.granularity() == Granularity::PerMessage
        {
            return Err(NegotiationError::Order {
                per_frame: prev.name().to_owned(),
                per_message: new.name().to_owned(),
            });
        }
    }
    Ok(())
}

/// The client's offers from all factories, in factory order.
pub fn client_offers(factories: &[Arc<dyn ExtensionFactory>]) -> Vec<ExtensionHeader> {
    factories.iter().flat_map(|f| f.offers()).collect()
}

/// Validates the server's `Sec-WebSocket-Extensions` answer on the client.
///
/// Every element must name an offered extension, at most once; each factory
/// validates its element; RSV conflicts and ordering are checked.
pub fn client_accept(
    factories: &[Arc<dyn ExtensionFactory>],
    response: &[ExtensionHeader],
) -> Result<Negotiated, NegotiationError> {
    let mut negotiated = Negotiated::none();
    for element in response {
        if negotiated
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(&element.name))
        {
            return Err(NegotiationError::Duplicate(element.name.clone()));
        }
        let factory = factories
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(&element.name))
            .ok_or_else(|| NegotiationError::NotOffered(element.name.clone()))?;
        let ext = factory
            .accept(element, &negotiated.extensions)?
            .named(&element.name);
        negotiated.push(element.clone(), ext)?;
    }
    Ok(negotiated)
}

/// Whose order of preference decides between alternative offers on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    /// Offers are taken in the client's order (RFC 6455 §9.1: the client
    /// lists them by preference). The default.
    #[default]
    Client,
    /// Factories are asked in the server's order, each taking the first
    /// offer (in the client's order) it accepts; the accepted extensions are
    /// then applied in the client's order. Use this to prefer, say,
    /// permessage-deflate over per-frame deflate whatever the client listed
    /// first.
    Server,
}

/// Picks extensions from the client's offers on the server.
///
/// Offers are taken in the client's order. An offer whose extension was
/// already accepted is skipped; otherwise every factory that handles the
/// token is asked in turn. An accepted extension that would conflict (RSV
/// bits, ordering) with the ones before it is declined rather than failing
/// the handshake, so a client offering two alternatives that share a bit
/// still gets the first. A factory's `Err` fails the handshake.
pub fn server_negotiate(
    factories: &[Arc<dyn ExtensionFactory>],
    offers: &[ExtensionHeader],
) -> Result<Negotiated, NegotiationError> {
    server_negotiate_with(factories, offers, Preference::Client)
}

/// [`server_negotiate`] with an explicit [`Preference`].
pub fn server_negotiate_with(
    factories: &[Arc<dyn ExtensionFactory>],
    offers: &[ExtensionHeader],
    preference: Preference,
) -> Result<Negotiated, NegotiationError> {
    if preference == Preference::Server {
        return server_preferred(factories, offers);
    }
    let mut negotiated = Negotiated::none();
    for offer in offers {
        if negotiated
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(&offer.name))
        {
            continue;
        }
        for factory in factories
            .iter()
            .filter(|f| handles(f.as_ref(), &offer.name))
        {
            if let Some((response, ext)) = factory.negotiate(offer, &negotiated.extensions)?
                && let ext = ext.named(&response.name)
                && check_compatible(&negotiated.extensions, &ext).is_ok()
            {
                negotiated.extensions.push(ext);
                negotiated.headers.push(response);
                break;
            }
        }
    }
    Ok(negotiated)
}

fn server_preferred(
    factories: &[Arc<dyn ExtensionFactory>],
    offers: &[ExtensionHeader],
) -> Result<Negotiated, NegotiationError> {
    // Accepted so far, in server order, with the index of the accepted offer.
    let mut extensions: Vec<Extension> = Vec::new();
    let mut meta: Vec<(usize, ExtensionHeader)> = Vec::new();
    for factory in factories {
        for (i, offer) in offers.iter().enumerate() {
            if !handles(factory.as_ref(), &offer.name)
                || meta
                    .iter()
                    .any(|m| m.1.name.eq_ignore_ascii_case(&offer.name))
            {
                continue;
            }
            if let Some((response, ext)) = factory.negotiate(offer, &extensions)? {
                let ext = ext.named(&response.name);
                if extensions.iter().all(|e| (e.rsv() & ext.rsv()).is_empty()) {
                    extensions.push(ext);
                    meta.push((i, response));
                }
                break;
            }
        }
    }
    // Apply in the client's order; drop what would then be out of order.
    let mut order: Vec<usize> = (0..meta.len()).collect();
    order.sort_by_key(|&k| meta[k].0);
    let mut slots: Vec<Option<(ExtensionHeader, Extension)>> = meta
        .into_iter()
        .zip(extensions)
        .map(|((_, h), e)| Some((h, e)))
        .collect();
    let mut negotiated = Negotiated::none();
    for k in order {
        let (header, ext) = slots[k].take().expect("each slot is taken once");
        if check_compatible(&negotiated.extensions, &ext).is_ok() {
            negotiated.extensions.push(ext);
            negotiated.headers.push(header);
        }
    }
    Ok(negotiated)
}
