//! A profile's mode, as the kernel's profile list, the compiled policy and
//! a profile's flags name it.

use serde::{Deserialize, Serialize};

/// The mode a profile is loaded in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Mode {
    Enforce,
    Complain,
    Kill,
    Unconfined,
    /// User (prompt) mode.
    Prompt,
    /// A word this armord does not know, kept as the kernel wrote it.
    Other(String),
}

impl Mode {
    /// The mode a word names: `enforce`, `complain`, … (`user` is the
    /// kernel's older word for prompt mode).
    pub fn from_word(w: &str) -> Mode {
        match w {
            "enforce" => Mode::Enforce,
            "complain" => Mode::Complain,
            "kill" => Mode::Kill,
            "unconfined" => Mode::Unconfined,
            "prompt" | "user" => Mode::Prompt,
            other => Mode::Other(other.to_owned()),
        }
    }

    /// The word the kernel's profile list uses.
    pub fn as_str(&self) -> &str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Complain => "complain",
            Mode::Kill => "kill",
            Mode::Unconfined => "unconfined",
            Mode::Prompt => "prompt",
            Mode::Other(w) => w,
        }
    }

    /// The mode packed in compiled policy (`mode` of a profile).
    pub fn from_packed(v: u32) -> Mode {
        match v {
            0 => Mode::Enforce,
            1 => Mode::Complain,
            2 => Mode::Kill,
            3 => Mode::Unconfined,
            4 => Mode::Prompt,
            v => Mode::Other(format!("mode {v}")),
        }
    }

    /// The words a profile's `flags=(…)` may name, other than enforce.
    pub const FLAG_WORDS: [&'static str; 4] = ["complain", "kill", "unconfined", "prompt"];
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Mode {
    fn from(s: String) -> Mode {
        Mode::from_word(&s)
    }
}

impl From<&str> for Mode {
    fn from(s: &str) -> Mode {
        Mode::from_word(s)
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.as_str().to_owned()
    }
}

impl PartialEq<str> for Mode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Mode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn words_round_trip_and_unknown_ones_are_kept() {
        for w in ["enforce", "complain", "kill", "unconfined", "prompt", "mixed"] {
            assert_eq!(Mode::from_word(w).as_str(), w);
        }
        assert_eq!(Mode::from_word("user"), Mode::Prompt);
        assert_eq!(serde_json::to_string(&Mode::Complain).unwrap(), "\"complain\"");
        let m: Mode = serde_json::from_str("\"kill\"").unwrap();
        assert_eq!(m, Mode::Kill);
        assert_eq!(Mode::from_packed(1), "complain");
    }
}
