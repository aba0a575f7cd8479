//! Latency histograms as text, so that reports from several machines can be
//! combined exactly (`echo-bench merge`) instead of by averaging
//! percentiles, which has no meaning.
//!
//! The form is HdrHistogram's standard one: the V2 encoding, compressed
//! (deflate), in base64, a string that starts `HISTFAAA`. It is what
//! HdrHistogram's log files hold and what its Java, C, Go and Python
//! implementations decode, so a report's histogram can be read by any of
//! them. [`decode`] also reads the uncompressed V2 form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::Latency;

/// `histogram` in HdrHistogram's V2 compressed form, base64.
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec fails only on a histogram the crate itself
    // could not have built.
    V2DeflateSerializer::new().serialize(histogram, &mut bytes).expect("a histogram serializes into memory");
    STANDARD.encode(bytes)
}

/// A histogram from [`encode`]'s form (or the uncompressed V2 one).
pub fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = STANDARD.decode(text.trim()).map_err(|e| anyhow::anyhow!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("not an HdrHistogram V2 histogram: {e:?}"))
}

/// The percentiles of a histogram of nanoseconds, in microseconds.
pub fn latency_us(histogram: &Histogram<u64>) -> Latency {
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    Latency {
        p50: us(0.5),
        p90: us(0.9),
        p99: us(0.99),
        p999: us(0.999),
        max: histogram.max() as f64 / 1e3,
        mean: histogram.mean() / 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_comes_back_whole() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for (value, count) in [(1, 3), (999, 1), (10_000, 1000), (123_456_789, 7), (3_000_000_000_000, 1)] {
            h.record_n(value, count).unwrap();
        }
        let text = encode(&h);
        assert!(text.starts_with("HISTFAAA"), "{text}");
        let back = decode(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 1012);
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err(), "base64, but not a histogram");
    }
}
