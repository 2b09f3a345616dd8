//! Suggested rules (filled in below).
