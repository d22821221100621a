//! CSV events (placeholder, being written).
