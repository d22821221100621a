//! TEMPORARY stub of reckon_connect::lineproto's API until it lands.
use reckon_connect::DecodeError;
use reckon_core::{Event, EventTime};
use reckon_runtime::StreamConfig;
#[derive(Debug, Clone, Copy)]
pub enum Precision {
    Ns,
}
impl Precision {
    pub fn parse(_s: &str) -> Result<Precision, DecodeError> {
        Ok(Precision::Ns)
    }
}
#[derive(Debug)]
pub struct LineProtocolDecoder;
impl LineProtocolDecoder {
    pub fn new(_c: &StreamConfig) -> Self {
        LineProtocolDecoder
    }
    pub fn decode(
        &mut self,
        _b: &str,
        _p: Precision,
        _now: EventTime,
    ) -> (Vec<Event>, Vec<DecodeError>) {
        (Vec::new(), Vec::new())
    }
}
