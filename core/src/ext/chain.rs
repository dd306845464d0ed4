//! The negotiated extensions, in order, for each direction.

use super::{ExtensionDecoder, ExtensionEncoder, Granularity, SendHints};
use crate::proto::{Frame, ProtocolError, Rsv};

/// The outgoing extensions in negotiated order.
#[derive(Default)]
pub struct EncoderChain {
    // (name, granularity, encoder), per-message ones first.
    stages: Vec<(String, Granularity, Box<dyn ExtensionEncoder>)>,
    per_frame_from: usize,
}

/// The incoming extensions, run in reverse negotiated order.
#[derive(Default)]
pub struct DecoderChain {
    stages: Vec<(String, Granularity, Box<dyn ExtensionDecoder>)>,
    rsv: Rsv,
}

impl std::fmt::Debug for EncoderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|s| &s.0))
            .finish()
    }
}

impl std::fmt::Debug for DecoderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|s| &s.0))
            .finish()
    }
}

impl EncoderChain {
    pub(crate) fn new(stages: Vec<(String, Granularity, Box<dyn ExtensionEncoder>)>) -> Self {
        let per_frame_from = stages
            .iter()
            .position(|s| s.1 == Granularity::PerFrame)
            .unwrap_or(stages.len());
        EncoderChain {
            stages,
            per_frame_from,
        }
    }

    /// True if no extension is negotiated.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// True if some extension runs per frame (fragment boundaries matter).
    pub fn has_per_frame(&self) -> bool {
        self.per_frame_from < self.stages.len()
    }

    /// Tells every encoder the connection is idle.
    pub fn idle(&mut self) {
        for (_, _, enc) in &mut self.stages {
            enc.idle();
        }
    }

    /// Runs the per-message encoders on a message or streamed fragment.
    pub fn encode_message(
        &mut self,
        frame: &mut Frame,
        hints: &SendHints,
    ) -> Result<(), ProtocolError> {
        for (name, _, enc) in &mut self.stages[..self.per_frame_from] {
            enc.encode(frame, hints)
                .map_err(|e| e.into_protocol(name))?;
        }
        Ok(())
    }

    /// Runs the per-frame encoders on one frame after fragmentation.
    pub fn encode_frame(
        &mut self,
        frame: &mut Frame,
        hints: &SendHints,
    ) -> Result<(), ProtocolError> {
        for (name, _, enc) in &mut self.stages[self.per_frame_from..] {
            enc.encode(frame, hints)
                .map_err(|e| e.into_protocol(name))?;
        }
        Ok(())
    }
}

impl DecoderChain {
    pub(crate) fn new(
        stages: Vec<(String, Granularity, Box<dyn ExtensionDecoder>)>,
        rsv: Rsv,
    ) -> Self {
        DecoderChain { stages, rsv }
    }

    /// The RSV bits some negotiated extension declared; any other bit on a
    /// data frame fails the connection before its payload is read.
    pub fn allowed_rsv(&self) -> Rsv {
        self.rsv
    }

    /// True if no extension is negotiated.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Tells every decoder the connection is idle.
    pub fn idle(&mut self) {
        for (_, _, dec) in &mut self.stages {
            dec.idle();
        }
    }

    /// Decodes one data frame: all stages in reverse negotiated order (so the
    /// per-frame ones, which come last, run first), each bounded by `budget`. Fails if an RSV bit is
    /// still set afterwards.
    pub fn decode(&mut self, frame: &mut Frame, budget: usize) -> Result<(), ProtocolError> {
        for (name, _, dec) in self.stages.iter_mut().rev() {
            dec.decode(frame, budget)
                .map_err(|e| e.into_protocol(name))?;
        }
        if !frame.rsv.is_empty() {
            return Err(ProtocolError::ReservedBits(frame.rsv));
        }
        Ok(())
    }
}
