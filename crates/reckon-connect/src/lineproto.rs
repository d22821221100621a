//! InfluxDB line protocol (placeholder, being written).
