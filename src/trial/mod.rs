//! Trial → enforce: what each owned profile would have denied, learned as
//! rules (`learned`, with `generalise` for what differs between runs), and
//! the gate that promotes a profile in trial to enforce on this node
//! (`gate`).

pub mod gate;
pub mod generalise;
pub mod learned;

pub use gate::{Evidence, Gate, Hold, Verdict, decide, spread_offset};
pub use learned::{Bounds, Learned, Observed};
