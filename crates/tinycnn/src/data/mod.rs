//! Data loading (work in progress).
