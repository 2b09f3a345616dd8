//! AppArmor audit records: the parser (pure) and suggested rules.

mod parse;
pub mod suggest;

pub use parse::{AuditId, ParseError, Record, Value, loss_marker, parse, parse_bytes, record_type};
