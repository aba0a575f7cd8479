//! The shared conformance suite (being written).
