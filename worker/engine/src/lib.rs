//! Weir engine.
